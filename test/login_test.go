package test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/test/harness"
)

// TestLoginBrowserFlow runs `jumpgate login` with its default flow
// (authorization code + PKCE, loopback redirect): $BROWSER is this test
// binary acting as the user's browser on the dev IdP's real login form.
func TestLoginBrowserFlowAndSignHost(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	idp := harness.StartIdP(t)
	srv := harness.StartServer(t, harness.ServerOptions{IdP: idp, Policy: bastionPolicy})
	dir := filepath.Join(t.TempDir(), "ssh")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	self, _ := os.Executable()
	out, err := harness.Run(ctx, []string{"BROWSER=" + self + " %s", "JG_TEST_BROWSER_USER=dave", "JG_TEST_IDP_CA=" + idp.CAFile, "SSL_CERT_FILE=" + idp.CAFile},
		harness.Binary(t), "login", "--server", srv.URL, "--ca-file", srv.CAFile, "--ssh-dir", dir, "--no-agent")
	if err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if !strings.Contains(out, "ProxyJump") && !strings.Contains(out, "Host ") {
		t.Errorf("no ssh_config snippet printed:\n%s", out)
	}
	for _, f := range []string{"id_ed25519", "id_ed25519-cert.pub", "known_hosts"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("%s not written: %v", f, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "id_ed25519")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", fi.Mode())
	}
	kh, _ := os.ReadFile(filepath.Join(dir, "known_hosts"))
	if !strings.HasPrefix(string(kh), "@cert-authority * ssh-ed25519 ") {
		t.Fatalf("known_hosts %q", kh)
	}

	// dave is an admin: he signs a host certificate; alice may not.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	keyFile := filepath.Join(t.TempDir(), "host.pub")
	os.WriteFile(keyFile, ssh.MarshalAuthorizedKey(sp), 0o644)
	certFile := filepath.Join(t.TempDir(), "host-cert.pub")
	if out, err := harness.Run(ctx, nil, harness.Binary(t), "ca", "sign-host", "--principals", "web-9,web-9.example.com", keyFile, "-o", certFile, "--ssh-dir", dir); err != nil {
		t.Fatalf("sign-host: %v %s", err, out)
	}
	o, err := exec.Command("ssh-keygen", "-L", "-f", certFile).CombinedOutput()
	if err != nil || !strings.Contains(string(o), "host certificate") || !strings.Contains(string(o), "web-9.example.com") {
		t.Fatalf("ssh-keygen -L host cert: %v %s", err, o)
	}
	alice := srv.Login(t, "alice")
	if out, err := alice.JG(t, "ca", "sign-host", "--principals", "evil", keyFile); err == nil || !strings.Contains(out, "admin") {
		t.Fatalf("non-admin signed a host key: %v %s", err, out)
	}
	if out, err := alice.JG(t, "ca", "revoke", "--serial", "1"); err == nil {
		t.Fatalf("non-admin revoked: %s", out)
	}
	if out, err := alice.JG(t, "audit", "verify"); err == nil {
		t.Fatalf("non-auditor verified the audit log: %s", out)
	}
}
