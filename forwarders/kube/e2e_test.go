package kube

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/testutil/kubetest"
)

// TestKubectlEndToEnd drives the real kubectl through the forwarder to a
// real kube-apiserver (testutil/kubetest).
func TestKubectlEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver")
	}
	if _, err := os.Stat(kubetest.KubectlPath()); err != nil {
		t.Skip("kubectl not installed")
	}
	c := kubetest.Start(t)
	c.Kubectl(t, "", "create", "clusterrolebinding", "alice-admin", "--clusterrole=cluster-admin", "--user=alice")
	c.Kubectl(t, "", "create", "namespace", "team")
	c.Kubectl(t, "", "-n", "default", "create", "secret", "generic", "db", "--from-literal=password=hunter2", "--from-literal=user=admin")
	c.Kubectl(t, "", "-n", "default", "create", "configmap", "cfg", "--from-literal=a=b")

	kubectl := func(t *testing.T, e *env, args ...string) (string, error) {
		t.Helper()
		dir := t.TempDir()
		kc := filepath.Join(dir, "config")
		_, port, _ := net.SplitHostPort(e.addr)
		p, _ := strconv.Atoi(port)
		if err := WriteKubeconfig(kc, "prod-k8s", p, e.caPEM); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubetest.KubectlPath(), append([]string{"--kubeconfig", kc, "--context", ContextName("prod-k8s")}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "KUBECONFIG=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustKubectl := func(t *testing.T, e *env, args ...string) string {
		t.Helper()
		out, err := kubectl(t, e, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	a := startForwarderToken(t, c.URL, c.CAPEM, c.Token, testPolicy, alice)
	bob := forwarders.Session{ID: "s2", User: "bob", Groups: []string{"engineering"}, Source: "127.0.0.1:6666"}
	b := startForwarderToken(t, c.URL, c.CAPEM, c.Token, testPolicy, bob)

	t.Run("impersonation per user", func(t *testing.T) {
		if out := mustKubectl(t, a, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"); !strings.Contains(out, "alice") || !strings.Contains(out, "engineering") {
			t.Fatalf("whoami as alice: %q", out)
		}
		mustKubectl(t, a, "get", "pods", "-n", "default")
		out, err := kubectl(t, b, "get", "pods", "-n", "default")
		if err == nil || !strings.Contains(out, `User "bob" cannot list resource "pods"`) {
			t.Fatalf("bob got through or a wrong error: %v\n%s", err, out)
		}
	})
	t.Run("secret masked", func(t *testing.T) {
		for _, args := range [][]string{
			{"get", "secret", "db", "-n", "default", "-o", "yaml"},
			{"get", "secrets", "-n", "default", "-o", "json"},
		} {
			out := mustKubectl(t, a, args...)
			if strings.Contains(out, base64.StdEncoding.EncodeToString([]byte("hunter2"))) || strings.Contains(out, "hunter2") {
				t.Fatalf("secret value leaked:\n%s", out)
			}
			if !strings.Contains(out, "password") || !strings.Contains(out, maskB64) {
				t.Fatalf("masked keys missing:\n%s", out)
			}
		}
		// The secret itself is intact upstream.
		if out := c.Kubectl(t, "", "-n", "default", "get", "secret", "db", "-o", "jsonpath={.data.password}"); out != base64.StdEncoding.EncodeToString([]byte("hunter2")) {
			t.Fatalf("upstream secret %q", out)
		}
	})
	t.Run("delete namespace refused", func(t *testing.T) {
		out, err := kubectl(t, a, "delete", "namespace", "team")
		if err == nil || !strings.Contains(out, "Forbidden") || !strings.Contains(out, "delete namespaces team is blocked by policy") {
			t.Fatalf("delete namespace: %v\n%s", err, out)
		}
		c.Kubectl(t, "", "get", "namespace", "team")
	})
	t.Run("held request proceeds after approval", func(t *testing.T) {
		a.appr.decision <- "approved"
		mustKubectl(t, a, "delete", "configmap", "cfg", "-n", "default")
		if out, err := c.KubectlErr("", "-n", "default", "get", "configmap", "cfg"); err == nil {
			t.Fatalf("configmap still there:\n%s", out)
		}
	})
	t.Run("every request audited", func(t *testing.T) {
		// kube.request events are committed after the response goes out
		// and before the connection's Serve returns.
		waitFor(t, "the delete's kube.request event", func() bool {
			for _, e := range a.audit.ofType(audit.KubeRequest) {
				if e.Details["resource"] == "configmaps" && e.Details["verb"] == "delete" {
					return true
				}
			}
			return false
		})
		reqs := a.audit.ofType(audit.KubeRequest)
		var sawSecret, sawDelete bool
		for _, e := range reqs {
			d := e.Details
			if e.User != "alice" || d["verb"] == "" || d["status"] == nil {
				t.Fatalf("incomplete event %+v", e)
			}
			if d["resource"] == "secrets" && d["name"] == "db" && d["verb"] == "get" && d["status"] == 200 {
				sawSecret = true
			}
			if d["resource"] == "configmaps" && d["verb"] == "delete" && d["approved"] == true {
				sawDelete = true
			}
		}
		blocked := a.audit.ofType(audit.KubeBlocked)
		if !sawSecret || !sawDelete || len(blocked) != 1 || blocked[0].Details["name"] != "team" {
			t.Fatalf("audit: secret=%v delete=%v blocked=%+v (%d requests)", sawSecret, sawDelete, blocked, len(reqs))
		}
	})
	t.Run("bypass attempts against the real API server", func(t *testing.T) {
		x := startForwarderToken(t, c.URL, c.CAPEM, c.Token, bypassPolicy, alice)
		for _, tc := range kubeBypassCases {
			if tc.want < 400 && tc.name != "method override header" {
				continue // allowed requests would change the cluster
			}
			tc.path = strings.ReplaceAll(tc.path, "/namespaces/prod", "/namespaces/team")
			tc.path = strings.ReplaceAll(tc.path, "%70%72%6f%64", "%74%65%61%6d")
			tc.path = strings.ReplaceAll(tc.path, "/namespaces/a/pods/p", "/namespaces/default/pods/nope")
			tc.body = strings.ReplaceAll(tc.body, "prod", "team")
			want := tc.want
			if tc.name == "method override header" {
				want = http.StatusMethodNotAllowed // kube-apiserver ignores the header
			}
			if resp := sendRaw(t, x, tc); resp.StatusCode != want {
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("%s: %s %s: status %d, want %d: %s", tc.name, tc.method, tc.path, resp.StatusCode, want, b)
			}
		}
		c.Kubectl(t, "", "get", "namespace", "team")
		if out := c.Kubectl(t, "", "get", "namespace", "team", "-o", "jsonpath={.metadata.labels.x}"); out != "" {
			t.Fatalf("a patch got through: label x=%q", out)
		}
	})
}
