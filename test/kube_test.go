package test

import (
	"context"
	"encoding/base64"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/kubetest"
)

const kubePolicy = `
roles:
  - name: eng
    groups: [engineering]
    targets: {names: [prod-k8s]}
kubernetes:
  block: [{verbs: [delete], resources: [namespaces]}]
  mask: [{resources: [secrets], fields: [data, stringData]}]
auditors: [{groups: [security]}]
`

// TestKubernetesThroughBastion: kubectl with the kubeconfig from
// `jumpgate kube-config`, over `ssh -L 16443:prod-k8s:443`, reaches a real
// kube-apiserver as the SSH user (impersonated), with secrets masked and
// namespace deletion refused.
func TestKubernetesThroughBastion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver")
	}
	if _, err := os.Stat(kubetest.KubectlPath()); err != nil {
		t.Skip("kubectl not installed")
	}
	c := kubetest.Start(t)
	c.Kubectl(t, "", "create", "clusterrolebinding", "alice-admin", "--clusterrole=cluster-admin", "--user=alice@example.com")
	c.Kubectl(t, "", "create", "namespace", "team")
	c.Kubectl(t, "", "-n", "default", "create", "secret", "generic", "db", "--from-literal=password=hunter2")
	srv, kc := kubeThroughBastion(t, c, kubePolicy)
	kubectl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubetest.KubectlPath(), append([]string{"--kubeconfig", kc, "--context", "jumpgate-prod-k8s"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "KUBECONFIG=")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || !strings.Contains(out, "alice@example.com") {
		t.Fatalf("whoami: %v %s", err, out)
	}
	out, err := kubectl("get", "secret", "db", "-n", "default", "-o", "yaml")
	if err != nil || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte("hunter2"))) || !strings.Contains(out, "password:") {
		t.Fatalf("secret not masked: %v\n%s", err, out)
	}
	out, err = kubectl("delete", "namespace", "team")
	if err == nil || !strings.Contains(out, "blocked by policy") {
		t.Fatalf("delete namespace: %v %s", err, out)
	}
	if out := c.Kubectl(t, "", "get", "namespace", "team", "-o", "name"); !strings.Contains(out, "team") {
		t.Fatal("namespace gone")
	}
	// kube.request events are committed after each response, before the
	// forwarder releases the channel.
	var events string
	harness.WaitFor(t, 10*time.Second, "kube.request and kube.blocked events", func() bool {
		events = srv.MustJG(t, "audit", "list", "--json", "--type", "kube.")
		return strings.Contains(events, `"kube.request"`) && strings.Contains(events, `"kube.blocked"`)
	})
}

// kubeThroughBastion starts a jumpgate server whose target prod-k8s is the
// cluster c, logs alice in, writes her kubeconfig with `jumpgate
// kube-config` and opens `ssh -L PORT:prod-k8s:443` (stopped with the
// test). It returns the server and the kubeconfig's path.
func kubeThroughBastion(t *testing.T, c *kubetest.Cluster, policy string) (*harness.Server, string) {
	t.Helper()
	u, _ := url.Parse(c.URL)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(c.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	idp := harness.StartIdP(t)
	srv := harness.StartServer(t, harness.ServerOptions{IdP: idp, Policy: policy, Targets: []harness.Target{{
		Name: "prod-k8s", Kind: "kubernetes", Address: u.Host,
		Extra: "    ca_file: " + c.CAFile + "\n    credentials: {token_file: " + tokFile + "}\n",
	}}})
	alice := srv.Login(t, "alice")
	lport := harness.FreePort(t)
	_, port, _ := net.SplitHostPort(lport)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	out, err := alice.JG(t, "kube-config", "prod-k8s", "--port", port, "-o", kc)
	if err != nil || !strings.Contains(out, "ssh -L "+port+":prod-k8s:443") {
		t.Fatalf("kube-config: %v %s", err, out)
	}
	sshTunnel(t, alice.SSHConfig, lport, "prod-k8s:443")
	return srv, kc
}
