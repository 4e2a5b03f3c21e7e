package test

import (
	"context"
	"io"
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

// TestKubeCAFromFilesAcrossServers: two servers that share nothing but
// the Kubernetes forwarder's CA files (ca.kube_cert_file, ca.kube_key_file;
// separate bbolt stores) serve the same CA at /v1/kube/ca, and a
// kubeconfig written by one works with the real kubectl through a tunnel
// to the other.
func TestKubeCAFromFilesAcrossServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver")
	}
	if _, err := os.Stat(kubetest.KubectlPath()); err != nil {
		t.Skip("kubectl not installed")
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "kube-ca.crt"), filepath.Join(dir, "kube-ca.key")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", crt, "-days", "3650", "-subj", "/CN=jumpgate-kube-ca",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	c := kubetest.Start(t)
	c.Kubectl(t, "", "create", "clusterrolebinding", "alice-admin", "--clusterrole=cluster-admin", "--user=alice@example.com")
	u, _ := url.Parse(c.URL)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(c.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	idp := harness.StartIdP(t)
	opts := harness.ServerOptions{IdP: idp, Policy: kubeExecPolicy, Targets: []harness.Target{{
		Name: "prod-k8s", Kind: "kubernetes", Address: u.Host,
		Extra: "    ca_file: " + c.CAFile + "\n    credentials: {token_file: " + tokFile + "}\n",
	}}, ExtraConfig: "ca: {kube_cert_file: " + crt + ", kube_key_file: " + key + "}\n"}
	a := harness.StartServer(t, opts)
	b := harness.StartServer(t, opts)

	pem, _ := os.ReadFile(crt)
	for _, s := range []*harness.Server{a, b} {
		resp, err := harness.TLSClient(t, s.CAFile).Get(s.URL + "/v1/kube/ca")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != strings.TrimSpace(string(pem)) {
			t.Fatalf("GET /v1/kube/ca: %d %s", resp.StatusCode, body)
		}
	}

	// The kubeconfig from a, the tunnel through b.
	lport := harness.FreePort(t)
	_, port, _ := net.SplitHostPort(lport)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if out, err := a.Login(t, "alice").JG(t, "kube-config", "prod-k8s", "--port", port, "-o", kc); err != nil {
		t.Fatalf("kube-config from a: %v %s", err, out)
	}
	aliceB := b.Login(t, "alice")
	sshTunnel(t, aliceB.SSHConfig, lport, "prod-k8s:443")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubetest.KubectlPath(), "--kubeconfig", kc, "--context", "jumpgate-prod-k8s", "get", "namespace", "default", "-o", "name")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "KUBECONFIG=")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "namespace/default" {
		t.Fatalf("kubectl with a's kubeconfig through b: %v %s", err, out)
	}
}
