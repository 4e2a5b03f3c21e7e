package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
)

const bastionPolicy = `
roles:
  - name: eng
    groups: [engineering]
    logins: [root]
    targets: {labels: {env: test}}
  - name: ops
    groups: [sre-leads]
    logins: [root]
    targets: {names: ["*"]}
commands:
  block: ['^\s*rm\s+-rf\s+/(\s|$)', 'mkfs', '^\s*(shutdown|reboot)\b', '^jg-forbidden\b']
  review: ['^\s*sudo\b', 'held-command']
requests: {approvers: [{groups: [sre-leads]}], max_duration: 4h}
auditors: [{groups: [security]}]
admins: [{groups: [sre-leads]}]
`

type bastionEnv struct {
	srv     *harness.Server
	alice   *harness.User // engineering
	dave    *harness.User // sre-leads: approver, admin
	keys    harness.CAKeys
	idp     *harness.IdP
	target  string
	sshdPID int
}

func startBastionEnv(t *testing.T, extraConfig ...string) *bastionEnv {
	t.Helper()
	return startBastionEnvWith(t, "", extraConfig...)
}

// startBastionEnvWith is startBastionEnv with more keys in the bastion
// block (harness.ServerOptions.BastionExtra).
func startBastionEnvWith(t *testing.T, bastionExtra string, extraConfig ...string) *bastionEnv {
	t.Helper()
	keys := harness.NewCAKeys(t)
	sshd := keys.StartCertSSHD(t, []string{"web-1", "web-raw", "prod-1"})
	idp := harness.StartIdP(t)
	srv := harness.StartServer(t, harness.ServerOptions{
		IdP: idp, Policy: bastionPolicy, ExtraConfig: keys.CAConfig("", "") + strings.Join(extraConfig, ""), BastionExtra: bastionExtra,
		Targets: []harness.Target{
			{Name: "web-1", Kind: "ssh", Address: sshd.Addr, HostKey: "@cert-authority", Labels: map[string]string{"env": "test"}},
			{Name: "web-raw", Kind: "ssh", Address: sshd.Addr, HostKey: "@cert-authority", Record: boolp(false), Labels: map[string]string{"env": "test"}},
			{Name: "prod-1", Kind: "ssh", Address: sshd.Addr, HostKey: "@cert-authority", Labels: map[string]string{"env": "prod"}},
		},
	})
	return &bastionEnv{srv: srv, alice: srv.Login(t, "alice"), dave: srv.Login(t, "dave"), keys: keys, idp: idp, target: sshd.Addr, sshdPID: sshd.PID}
}

// sshTunnel runs `ssh -N -L PORT:remote jumpgate` with sshConfig for
// lport (127.0.0.1:PORT), as a user reaches a database or a cluster, and
// waits until the tunnel accepts connections. It is stopped with the test.
func sshTunnel(t *testing.T, sshConfig, lport, remote string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(lport)
	harness.Start(t, nil, "ssh", "-F", sshConfig, "-N", "-o", "ExitOnForwardFailure=yes", "-L", port+":"+remote, "jumpgate")
	harness.WaitFor(t, 30*time.Second, "the tunnel to "+remote, func() bool {
		c, err := net.DialTimeout("tcp", lport, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestBastionEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	alice, dave := env.alice, env.dave

	t.Run("exec through recorded target keeps stdout, stderr and exit status", func(t *testing.T) {
		cmd := exec.CommandContext(ctxT(t, 60*time.Second), "ssh", append(alice.SSHArgs("root", "web-1"), "echo hello-from-web-1; echo to-stderr >&2; exit 3")...)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		if exitCode(err) != 3 || strings.TrimSpace(so.String()) != "hello-from-web-1" || !strings.Contains(se.String(), "to-stderr") {
			t.Fatalf("exit %d stdout %q stderr %q", exitCode(err), so.String(), se.String())
		}
	})

	t.Run("no upstream connection outlives its session", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		for i := 0; i < 3; i++ {
			if out, err := alice.SSH(ctx, "root", "web-1", "true"); err != nil {
				t.Fatalf("ssh: %v %s", err, out)
			}
		}
		harness.WaitFor(t, 15*time.Second, "the target's session processes to go away", func() bool { return len(childPIDs(env.sshdPID)) == 0 })
	})

	t.Run("stdin EOF and large output pass through", func(t *testing.T) {
		data := make([]byte, 3<<20)
		rand.Read(data)
		cmd := exec.CommandContext(ctxT(t, 60*time.Second), "ssh", append(alice.SSHArgs("root", "web-1"), "sha256sum")...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		want := fmt.Sprintf("%x", sha256Sum(data))
		if err != nil || !strings.HasPrefix(string(out), want) {
			t.Fatalf("sha256 through bastion: %v %q want %s", err, out, want)
		}
	})

	t.Run("interactive shell with ssh -tt", func(t *testing.T) {
		cmd := exec.CommandContext(ctxT(t, 60*time.Second), "ssh", alice.SSHArgs("root", "web-1", "-tt")...)
		cmd.Stdin = strings.NewReader("echo $((6*7))-answer\nexit\n")
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "42-answer") {
			t.Fatalf("shell output %q", out)
		}
	})

	t.Run("scp and sftp round trips are byte-identical", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src.bin")
		data := make([]byte, 5<<20)
		rand.Read(data)
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		remote := fmt.Sprintf("/tmp/jg-e2e-%d.bin", time.Now().UnixNano())
		t.Cleanup(func() { os.Remove(remote) })
		ctx := ctxT(t, 120*time.Second)
		if out, err := harness.Run(ctx, nil, "scp", "-F", alice.SSHConfig, "-J", "jumpgate", src, "root@web-1:"+remote); err != nil {
			t.Fatalf("scp up: %v %s", err, out)
		}
		back := filepath.Join(dir, "back.bin")
		if out, err := harness.Run(ctx, nil, "scp", "-F", alice.SSHConfig, "-J", "jumpgate", "root@web-1:"+remote, back); err != nil {
			t.Fatalf("scp down: %v %s", err, out)
		}
		if harness.SHA256File(t, back) != harness.SHA256File(t, src) {
			t.Fatal("scp round trip changed the file")
		}
		batch := filepath.Join(dir, "batch")
		back2 := filepath.Join(dir, "back2.bin")
		os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s.sftp\nget %s.sftp %s\nrm %s.sftp\n", src, remote, remote, back2, remote)), 0o600)
		if out, err := harness.Run(ctx, nil, "sftp", "-F", alice.SSHConfig, "-J", "jumpgate", "-b", batch, "root@web-1"); err != nil {
			t.Fatalf("sftp: %v %s", err, out)
		}
		if harness.SHA256File(t, back2) != harness.SHA256File(t, src) {
			t.Fatal("sftp round trip changed the file")
		}
	})

	t.Run("passthrough target relays with half-close and rsync works", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		out, err := alice.SSH(ctx, "root", "web-raw", "echo raw-ok")
		if err != nil || strings.TrimSpace(out) != "raw-ok" {
			t.Fatalf("passthrough exec: %v %q", err, out)
		}
		if _, err := exec.LookPath("rsync"); err != nil {
			t.Skip("rsync not installed")
		}
		dir := t.TempDir()
		src := filepath.Join(dir, "r.bin")
		data := make([]byte, 1<<20)
		rand.Read(data)
		os.WriteFile(src, data, 0o600)
		remote := fmt.Sprintf("/tmp/jg-rsync-%d.bin", time.Now().UnixNano())
		t.Cleanup(func() { os.Remove(remote) })
		rsh := "ssh -F " + alice.SSHConfig + " -J jumpgate"
		if out, err := harness.Run(ctx, nil, "rsync", "-e", rsh, src, "root@web-raw:"+remote); err != nil {
			t.Fatalf("rsync: %v %s", err, out)
		}
		if harness.SHA256File(t, remote) != harness.SHA256File(t, src) {
			t.Fatal("rsync changed the file")
		}
	})

	t.Run("ssh -L to an allowed target port", func(t *testing.T) {
		lport := harness.FreePort(t)
		_, port, _ := net.SplitHostPort(lport)
		p := harness.Start(t, nil, "ssh", "-F", alice.SSHConfig, "-N", "-o", "ExitOnForwardFailure=yes", "-L", port+":web-raw:22", "jumpgate")
		var banner string
		harness.WaitFor(t, 30*time.Second, "the -L forward to answer", func() bool {
			c, err := net.DialTimeout("tcp", lport, time.Second)
			if err != nil {
				return false
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			banner = line
			return strings.HasPrefix(line, "SSH-2.0-")
		})
		_ = p.Stop(5 * time.Second)
		if !strings.HasPrefix(banner, "SSH-2.0-OpenSSH") {
			t.Fatalf("banner %q", banner)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		ctx := ctxT(t, 120*time.Second)
		cases := []struct{ name, login, target string }{
			{"unknown target", "root", "no-such-target"},
			{"raw IP", "root", "127.0.0.1"},
			{"IPv6 loopback", "root", "[::1]"},
			{"localhost", "root", "localhost"},
			{"target outside policy", "root", "prod-1"},
			{"login not granted", "nobody", "web-1"},
		}
		for _, c := range cases {
			out, err := alice.SSH(ctx, c.login, c.target, "echo SHOULD-NOT-RUN")
			if err == nil || strings.Contains(out, "SHOULD-NOT-RUN") {
				t.Errorf("%s: ssh succeeded: %q", c.name, out)
			}
		}
		// -L to a raw address is refused by the bastion.
		lport := harness.FreePort(t)
		_, port, _ := net.SplitHostPort(lport)
		p := harness.Start(t, nil, "ssh", "-F", alice.SSHConfig, "-N", "-L", port+":"+env.target, "jumpgate")
		harness.WaitFor(t, 30*time.Second, "the -L listener", func() bool {
			c, err := net.DialTimeout("tcp", lport, time.Second)
			if err != nil {
				return false
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			if len(b) > 0 {
				t.Errorf("open relay: read %q through -L to a raw address", b)
			}
			return true
		})
		_ = p.Stop(5 * time.Second)
		// -R is refused.
		out, err := harness.Run(ctx, nil, "ssh", "-F", alice.SSHConfig, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", "jumpgate")
		if err == nil {
			t.Errorf("-R accepted: %s", out)
		}
	})

	t.Run("blocked exec gets exit status 126 and an audit event", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		// Harmless commands that block rules match: if filtering failed
		// they would only print "not found".
		for _, c := range []string{"jg-forbidden", "/usr/bin/jg-forbidden --now", "sh -c 'jg-forbidden'", "echo x; mkfs.jgtest /dev/null", "true && \"jg-forbidden\""} {
			cmd := exec.CommandContext(ctx, "ssh", append(alice.SSHArgs("root", "web-1"), c)...)
			var se bytes.Buffer
			cmd.Stderr = &se
			err := cmd.Run()
			if exitCode(err) != 126 || !strings.Contains(se.String(), "blocked") {
				t.Errorf("%q: exit %d stderr %q", c, exitCode(err), se.String())
			}
		}
		out := env.srv.MustJG(t, "audit", "list", "--json", "--type", "command.blocked")
		if !strings.Contains(out, `jg-forbidden`) {
			t.Fatalf("no command.blocked event: %s", out)
		}
	})

	t.Run("held exec runs after jumpgate approve", func(t *testing.T) {
		p := harness.Start(t, nil, "ssh", append(alice.SSHArgs("root", "web-1"), "echo held-command-ran")...)
		var id string
		harness.WaitFor(t, 30*time.Second, "a pending request", func() bool {
			out, err := env.srv.JG(t, "requests", "list", "--json")
			if err != nil {
				return false
			}
			var rs []storage.Request
			json.Unmarshal([]byte(out), &rs)
			for _, r := range rs {
				if r.Status == "pending" && r.Kind == "command" && strings.Contains(r.What, "held-command") {
					id = r.ID
					return true
				}
			}
			return false
		})
		if out, err := alice.JG(t, "approve", id); err == nil {
			t.Fatalf("alice approved her own request: %s", out)
		}
		if out, err := dave.JG(t, "approve", id); err != nil {
			t.Fatalf("dave approve: %v %s", err, out)
		}
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("held command did not complete after approval")
		}
		if p.Err() != nil || !strings.Contains(p.Out.String(), "held-command-ran") {
			t.Fatalf("held command: %v %q", p.Err(), p.Out.String())
		}
	})

	t.Run("interactive blocked line is not run and the session stays open", func(t *testing.T) {
		marker := fmt.Sprintf("/tmp/jg-e2e-should-not-exist-%d", time.Now().UnixNano())
		term := harness.StartTerminal(t, "ssh", alice.SSHArgs("root", "web-1", "-tt")...)
		// Wait for bash before typing: type-ahead is a documented limit.
		harness.WaitFor(t, 30*time.Second, "the first prompt", term.Seen("# "))
		// The prompt as displayed differs from what is typed to set it.
		term.Type("PS1='jg-''prompt% '\r")
		harness.WaitFor(t, 30*time.Second, "the prompt", term.Seen("jg-prompt% "))
		// A harmless command that a block rule (mkfs) matches, typed with an
		// editing mistake and a correction, like a person.
		term.Type("mkfs.jgtestX\x7f\x7f\x7f\x7f\x7f\x7fjgtest /dev/null; touch " + marker + "\r")
		harness.WaitFor(t, 30*time.Second, "the block message", term.Seen("blocked"))
		term.Type("echo still-$((40+2))\r")
		harness.WaitFor(t, 30*time.Second, "the session to stay usable", term.Seen("still-42"))
		term.Type("exit\r")
		term.Wait(t, 30*time.Second)
		if _, err := os.Stat(marker); err == nil {
			os.Remove(marker)
			t.Fatal("the blocked line ran")
		}
	})

	t.Run("window size changes reach the target and the recording", func(t *testing.T) {
		term := harness.StartTerminal(t, "ssh", alice.SSHArgs("root", "web-1", "-tt")...)
		harness.WaitFor(t, 30*time.Second, "the first prompt", term.Seen("# "))
		term.Type("stty size\r")
		harness.WaitFor(t, 30*time.Second, "the initial size", term.Seen("40 120"))
		if err := term.Resize(132, 50); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 30*time.Second, "the new size", func() bool {
			term.Type("stty size\r")
			time.Sleep(200 * time.Millisecond)
			return strings.Contains(term.Output(), "50 132")
		})
		term.Type("exit\r")
		term.Wait(t, 30*time.Second)
	})

	t.Run("recordings list, export and play in asciinema", func(t *testing.T) {
		out := env.srv.MustJG(t, "sessions", "list", "--json")
		var ss []storage.Session
		if err := json.Unmarshal([]byte(out), &ss); err != nil {
			t.Fatalf("sessions json: %v\n%s", err, out)
		}
		var id string
		for _, s := range ss {
			if s.Kind == "exec" && strings.Contains(s.Command, "hello-from-web-1") && s.Status == "ended" {
				id = s.ID
			}
		}
		if id == "" {
			t.Fatalf("exec session not listed: %s", out)
		}
		cast := env.srv.MustJG(t, "sessions", "export", id)
		file := filepath.Join(t.TempDir(), "s.cast")
		os.WriteFile(file, []byte(cast), 0o600)
		if _, err := exec.LookPath("asciinema"); err != nil {
			t.Skip("asciinema not installed")
		}
		// asciinema needs a terminal.
		cmd := exec.Command("asciinema", "cat", file)
		f, err := pty.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		played, _ := io.ReadAll(f)
		cmd.Wait()
		if !strings.Contains(string(played), "hello-from-web-1") {
			t.Fatalf("asciinema cat output %q", played)
		}
		// The audit log carries the recording's hash and signature.
		events := env.srv.MustJG(t, "audit", "list", "--json", "--type", "session.end")
		if !strings.Contains(events, `"sha256"`) || !strings.Contains(events, `"signature"`) {
			t.Fatalf("session.end lacks sha256/signature: %s", events)
		}
		env.srv.MustJG(t, "audit", "verify")
	})

	t.Run("revoked certificate is refused at the bastion", func(t *testing.T) {
		bob := env.srv.Login(t, "bob") // engineering too
		ctx := ctxT(t, 60*time.Second)
		if out, err := bob.SSH(ctx, "root", "web-1", "true"); err != nil {
			t.Fatalf("bob before revocation: %v %s", err, out)
		}
		st, err := bob.JG(t, "status")
		if err != nil {
			t.Fatal(err, st)
		}
		keyID := ""
		for _, l := range strings.Split(st, "\n") {
			if strings.Contains(strings.ToLower(l), "key id") {
				f := strings.Fields(l)
				keyID = strings.Trim(f[len(f)-1], `"`)
			}
		}
		if keyID == "" {
			t.Fatalf("no key id in status: %s", st)
		}
		env.srv.MustJG(t, "ca", "revoke", "--key-id", keyID, "--reason", "e2e")
		if out, err := bob.SSH(ctx, "root", "web-1", "echo SHOULD-NOT-RUN"); err == nil || strings.Contains(out, "SHOULD-NOT-RUN") {
			t.Fatalf("revoked certificate accepted: %s", out)
		}
	})
}
