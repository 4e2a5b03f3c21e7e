package test

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/metrics"
	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/sshdtest"
)

// scrape returns the /metrics page of s.
func scrape(t *testing.T, s *harness.Server) string {
	t.Helper()
	resp, err := harness.TLSClient(t, s.CAFile).Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// checkMetrics fails unless the page carries every jumpgate family.
func checkMetrics(t *testing.T, page string) {
	t.Helper()
	for _, f := range metrics.Families {
		if !strings.Contains(page, "# TYPE "+f+" ") {
			t.Errorf("/metrics lacks %s", f)
		}
	}
}

// TestMetricsAndSIGHUP scrapes /metrics of a running server after a recorded
// session (every family present, sessions, certificates, recording writes
// and storage latency counted), then relabels a target in the config file
// and sends SIGHUP: the change is in force without a restart.
func TestMetricsAndSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	ctx := ctxT(t, 90*time.Second)
	if out, err := env.alice.SSH(ctx, "root", "web-1", "echo metered"); err != nil || !strings.Contains(out, "metered") {
		t.Fatalf("ssh: %v %q", err, out)
	}
	page := scrape(t, env.srv)
	checkMetrics(t, page)
	for _, want := range []string{
		"jumpgate_certificates_issued_total 2", // alice and dave logged in
		`jumpgate_sessions_total{kind="exec"} 1`,
		`jumpgate_active_sessions{kind="shell"} 0`,
		`jumpgate_blocked_total{kind="sql"} 0`,
		`jumpgate_storage_seconds_count{op="ping"}`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(page, "jumpgate_recording_write_seconds_count 0\n") {
		t.Error("the recorded session observed no recording write")
	}

	// SIGHUP: prod-1 relabelled env: test in the config file is open to
	// alice (role eng) at once, without a restart.
	if out, err := env.alice.SSH(ctx, "root", "prod-1", "true"); err == nil {
		t.Fatalf("prod-1 reachable for alice before the change: %q", out)
	}
	cfg, err := os.ReadFile(env.srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(cfg), "labels: {env: prod}", "labels: {env: test}", 1)
	if changed == string(cfg) {
		t.Fatalf("no prod label in the config:\n%s", cfg)
	}
	if err := os.WriteFile(env.srv.ConfigFile, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(env.srv.Proc.Cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 10*time.Second, "the SIGHUP reload", func() bool {
		return strings.Contains(env.srv.Proc.Out.String(), "SIGHUP: targets reloaded")
	})
	if out, err := env.alice.SSH(ctx, "root", "prod-1", "echo prod-1-after-sighup"); err != nil || !strings.Contains(out, "prod-1-after-sighup") {
		t.Fatalf("prod-1 after SIGHUP: %v %q", err, out)
	}
}

// TestUserCARotationOverlap: the user CA is rotated with an overlap. Targets
// trust both user CA keys (TrustedUserCAKeys with both lines); the bastion
// restarts on the new key with the old one in ca.trusted_user_ca_keys and
// still accepts a certificate the old key issued, while a fresh login gets
// a certificate from the new key; without the old key listed, the old
// certificate is refused.
func TestUserCARotationOverlap(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	oldKeys, newKeys := harness.NewCAKeys(t), harness.NewCAKeys(t)
	priv, cert := oldKeys.HostCert(t, "web-1", "127.0.0.1")
	sshd := sshdtest.Start(t, sshdtest.Options{
		TrustedUserCAKeys:    []ssh.PublicKey{oldKeys.User.PublicKey(), newKeys.User.PublicKey()},
		AuthorizedPrincipals: map[string][]string{"root": {"root"}},
		HostKey:              priv, HostCertificate: cert,
	})
	idp := harness.StartIdP(t)
	srv := harness.StartServer(t, harness.ServerOptions{IdP: idp, Policy: bastionPolicy, ExtraConfig: oldKeys.CAConfig("", ""),
		Targets: []harness.Target{{Name: "web-1", Kind: "ssh", Address: sshd.Addr, HostKey: "@cert-authority", Labels: map[string]string{"env": "test"}}}})
	alice := srv.Login(t, "alice")
	ctx := ctxT(t, 90*time.Second)
	if out, err := alice.SSH(ctx, "root", "web-1", "echo old-ca"); err != nil || !strings.Contains(out, "old-ca") {
		t.Fatalf("before the rotation: %v %q", err, out)
	}
	cfg, err := os.ReadFile(srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	rotate := func(trusted string) {
		t.Helper()
		c := strings.Replace(string(cfg), oldKeys.CAConfig("", ""), "ca: {user_key_file: "+newKeys.UserFile+", host_key_file: "+oldKeys.HostFile+trusted+"}\n", 1)
		if err := os.WriteFile(srv.ConfigFile, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		srv.Restart(t)
	}
	oldPub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(oldKeys.User.PublicKey())))
	rotate(", trusted_user_ca_keys: [\"" + oldPub + "\"]")
	if out, err := alice.SSH(ctx, "root", "web-1", "echo overlap"); err != nil || !strings.Contains(out, "overlap") {
		t.Fatalf("old certificate during the overlap: %v %q", err, out)
	}
	if out, err := alice.JG(t, "sessions", "list"); err != nil {
		t.Fatalf("API with the old certificate during the overlap: %v %s", err, out)
	}
	bob := srv.Login(t, "bob")
	if out, err := bob.SSH(ctx, "root", "web-1", "echo new-ca"); err != nil || !strings.Contains(out, "new-ca") {
		t.Fatalf("certificate from the new key: %v %q", err, out)
	}
	if got := srv.MustJG(t, "ca", "pubkey", "--user"); !strings.Contains(got, strings.Fields(string(ssh.MarshalAuthorizedKey(newKeys.User.PublicKey())))[1]) {
		t.Fatalf("ca pubkey --user after the rotation: %q", got)
	}
	rotate("") // overlap over: the old key is no longer trusted
	if out, err := alice.SSH(ctx, "root", "web-1", "true"); err == nil {
		t.Fatalf("old certificate accepted after the overlap: %q", out)
	}
}
