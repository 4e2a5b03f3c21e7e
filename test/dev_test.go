package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/sshdtest"
)

// devEnv is a running `jumpgate dev`.
type devEnv struct {
	dir, url, caFile, sshAddr, configFile string
	proc                                  *harness.Process
}

func startDev(t *testing.T) *devEnv {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "jg-dev")
	p := harness.Start(t, nil, harness.Binary(t), "dev", "--dir", dir, "--https-addr", "127.0.0.1:0", "--ssh-addr", "127.0.0.1:0")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("jumpgate dev output:\n%s", p.Out.String())
		}
	})
	d := &devEnv{dir: dir, proc: p, configFile: filepath.Join(dir, "config.yaml")}
	harness.WaitFor(t, 60*time.Second, "jumpgate dev to print its instructions", func() bool {
		select {
		case <-p.Done():
			t.Fatalf("jumpgate dev exited: %v\n%s", p.Err(), p.Out.String())
		default:
		}
		return strings.Contains(p.Out.String(), "Stop with Ctrl-C")
	})
	cfg, err := config.Load(d.configFile)
	if err != nil {
		t.Fatal(err)
	}
	d.url, d.sshAddr, d.caFile = "https://"+cfg.Listen.HTTPS, cfg.Listen.SSH, filepath.Join(cfg.DataDir, "tls", "cert.pem")
	return d
}

func jg(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return harness.Run(ctx, nil, harness.Binary(t), args...)
}

func mustJG(t *testing.T, args ...string) string {
	t.Helper()
	out, err := jg(t, args...)
	if err != nil {
		t.Fatalf("jumpgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// deviceLogin runs `jumpgate login --device` and completes it from the
// terminal with `jumpgate dev approve-device`, as the dev instructions say.
func (d *devEnv) deviceLogin(t *testing.T, user, sshDir string) {
	t.Helper()
	p := harness.Start(t, nil, harness.Binary(t), "login", "--server", d.url, "--ca-file", d.caFile, "--device", "--ssh-dir", sshDir, "--no-agent")
	code := regexp.MustCompile(`\b([A-Z0-9]{4}-[A-Z0-9]{4}|[A-Z0-9]{8})\b`)
	var userCode string
	harness.WaitFor(t, 30*time.Second, "the device code", func() bool {
		for _, line := range strings.Split(p.Out.String(), "\n") {
			if strings.Contains(strings.ToLower(line), "code") {
				if m := code.FindStringSubmatch(line); m != nil {
					userCode = m[1]
					return true
				}
			}
		}
		return false
	})
	mustJG(t, "dev", "approve-device", "--server", d.url, "--ca-file", d.caFile, "--user", user, userCode)
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("login did not finish:\n%s", p.Out.String())
	}
	if p.Err() != nil {
		t.Fatalf("login: %v\n%s", p.Err(), p.Out.String())
	}
}

func TestDevLoginCertificateAndKRL(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	d := startDev(t)
	sshDir := filepath.Join(t.TempDir(), "alice")
	d.deviceLogin(t, "alice", sshDir)

	// The certificate as OpenSSH reads it.
	out, err := exec.Command("ssh-keygen", "-L", "-f", filepath.Join(sshDir, "id_ed25519-cert.pub")).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v %s", err, out)
	}
	if !strings.Contains(string(out), `Key ID: "alice@example.com/`) {
		t.Fatalf("key id: %s", out)
	}
	valid := regexp.MustCompile(`Valid: from (\S+) to (\S+)`).FindStringSubmatch(string(out))
	if valid == nil {
		t.Fatalf("no validity: %s", out)
	}
	from, _ := time.ParseInLocation("2006-01-02T15:04:05", valid[1], time.Local)
	to, _ := time.ParseInLocation("2006-01-02T15:04:05", valid[2], time.Local)
	if to.Sub(from) > 11*time.Minute { // 10m TTL + 1m backdating
		t.Fatalf("certificate lives %v, more than the 10m TTL", to.Sub(from))
	}
	status := mustJG(t, "status", "--ssh-dir", sshDir)
	if !strings.Contains(status, "alice@example.com") {
		t.Fatalf("status: %s", status)
	}

	// A real sshd trusting the jumpgate user CA accepts the certificate.
	userCA := mustJG(t, "ca", "pubkey", "--user", "--ssh-dir", sshDir)
	caKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(userCA))
	if err != nil {
		t.Fatalf("user CA %q: %v", userCA, err)
	}
	krlFile := filepath.Join(t.TempDir(), "revoked.krl")
	os.WriteFile(krlFile, nil, 0o644)
	login := strings.TrimSpace(mustOut(t, "id", "-un"))
	sshd := sshdtest.Start(t, sshdtest.Options{TrustedUserCAKeys: []ssh.PublicKey{caKey}, RevokedKeysFile: krlFile,
		AuthorizedPrincipals: map[string][]string{login: {login}}})
	kh := filepath.Join(t.TempDir(), "kh")
	os.WriteFile(kh, []byte(sshd.KnownHostsLine()+"\n"), 0o600)
	args := append(sshd.SSHArgs(filepath.Join(sshDir, "id_ed25519"), filepath.Join(sshDir, "id_ed25519-cert.pub"), kh), "-l", login, "127.0.0.1", "echo accepted")
	if out, err := exec.Command("ssh", args...).CombinedOutput(); err != nil || !strings.Contains(string(out), "accepted") {
		t.Fatalf("sshd refused the jumpgate certificate: %v %s\n%s", err, out, sshd.Logs())
	}

	// Revoke by serial (admin on the server host: --config), publish the
	// KRL, and sshd refuses the same certificate.
	st := mustJG(t, "status", "--ssh-dir", sshDir)
	serial := regexp.MustCompile(`serial:\s+(\d+)`).FindStringSubmatch(st)
	if serial == nil {
		t.Fatalf("no serial in status: %s", st)
	}
	mustJG(t, "ca", "revoke", "--serial", serial[1], "--reason", "test", "--config", d.configFile)
	mustJG(t, "ca", "krl", "-o", krlFile, "--config", d.configFile)
	if out, err := exec.Command("ssh-keygen", "-Q", "-f", krlFile, filepath.Join(sshDir, "id_ed25519-cert.pub")).CombinedOutput(); err == nil || !strings.Contains(string(out), "REVOKED") {
		t.Fatalf("ssh-keygen -Q did not report REVOKED: %v %s", err, out)
	}
	if out, err := exec.Command("ssh", args...).CombinedOutput(); err == nil {
		t.Fatalf("sshd accepted a revoked certificate: %s", out)
	}
	// The KRL is also served over HTTPS.
	resp, err := harness.TLSClient(t, d.caFile).Get(d.url + "/v1/krl")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/krl: %v", err)
	}
	resp.Body.Close()
	mustJG(t, "audit", "verify", "--config", d.configFile)
	events := mustJG(t, "audit", "list", "--json", "--config", d.configFile)
	for _, typ := range []string{"cert.issued", "cert.revoked"} {
		if !strings.Contains(events, `"`+typ+`"`) {
			t.Errorf("audit log lacks %s", typ)
		}
	}
}

func mustOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestDevDemoTargetRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	d := startDev(t)
	sshDir := filepath.Join(t.TempDir(), "alice")
	d.deviceLogin(t, "alice", sshDir)
	host, port, _ := net.SplitHostPort(d.sshAddr)
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(cfg, []byte(fmt.Sprintf("Host jumpgate\n  HostName %s\n  Port %s\nHost *\n  IdentityFile %[3]s/id_ed25519\n  CertificateFile %[3]s/id_ed25519-cert.pub\n  UserKnownHostsFile %[3]s/known_hosts\n  IdentitiesOnly yes\n  IdentityAgent none\n  BatchMode yes\n  StrictHostKeyChecking yes\n", host, port, sshDir)), 0o600)
	login := strings.TrimSpace(mustOut(t, "id", "-un"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-F", cfg, "-J", "jumpgate", login+"@demo", "echo demo-$((20+22))")
	var so bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &so
	if err := cmd.Run(); err != nil || !strings.Contains(so.String(), "demo-42") {
		t.Fatalf("ssh to demo: %v %s", err, so.String())
	}
	// `ssh bastion` itself lists what the user can reach.
	out, _ := harness.Run(ctx, nil, "ssh", "-F", cfg, "jumpgate")
	if !strings.Contains(out, "demo") || !strings.Contains(out, "no shell here") {
		t.Fatalf("bastion banner: %q", out)
	}
	var ss []storage.Session
	harness.WaitFor(t, 10*time.Second, "the session to be listed as ended", func() bool {
		out := mustJG(t, "sessions", "list", "--json", "--config", d.configFile)
		json.Unmarshal([]byte(out), &ss)
		for _, s := range ss {
			if s.Target == "demo" && s.Status == "ended" {
				return true
			}
		}
		return false
	})
	replay := mustJG(t, "replay", ss[len(ss)-1].ID, "--speed", "100", "--config", d.configFile)
	if !strings.Contains(replay, "demo-42") {
		t.Fatalf("replay: %q", replay)
	}
}
