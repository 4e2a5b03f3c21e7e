package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
)

// TestCrashMidSession kills the server with SIGKILL while a recorded shell
// runs: after a restart the session is marked interrupted, its recording
// plays up to the crash, and the audit chain verifies.
func TestCrashMidSession(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	term := harness.StartTerminal(t, "ssh", env.alice.SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a shell prompt", term.Seen("#"))
	term.Type("echo before-crash-$((1+1))\r")
	harness.WaitFor(t, 30*time.Second, "the output", term.Seen("before-crash-2"))
	// Wait until the recording on disk holds it (the recorder flushes as
	// the session runs), then crash.
	recDir := filepath.Join(env.srv.DataDir, "recordings")
	harness.WaitFor(t, 10*time.Second, "the recording to reach the disk", func() bool {
		found := false
		filepath.Walk(recDir, func(p string, info os.FileInfo, err error) error {
			if err == nil && strings.HasSuffix(p, ".cast") {
				b, _ := os.ReadFile(p)
				found = found || strings.Contains(string(b), "before-crash-2")
			}
			return nil
		})
		return found
	})
	env.srv.Crash(t)

	var ss []storage.Session
	json.Unmarshal([]byte(env.srv.MustJG(t, "sessions", "list", "--json")), &ss)
	var id string
	for _, s := range ss {
		if s.Kind == "shell" {
			id = s.ID
			if s.Status != storage.SessionInterrupted {
				t.Fatalf("session status %q, want interrupted", s.Status)
			}
		}
	}
	if id == "" {
		t.Fatal("shell session not listed")
	}
	cast := env.srv.MustJG(t, "sessions", "export", id)
	if !strings.Contains(checkCast(t, cast), "before-crash-2") {
		t.Fatalf("recording lost what was acknowledged before the crash:\n%s", cast)
	}
	if play := env.srv.MustJG(t, "replay", id, "--speed", "1000", "--idle-limit", "1ms"); !strings.Contains(play, "before-crash-2") {
		t.Fatalf("replay of the interrupted session: %q", play)
	}
	env.srv.MustJG(t, "audit", "verify")
	if ev := env.srv.MustJG(t, "audit", "list", "--json", "--type", "session.end"); !strings.Contains(ev, "interrupted") {
		t.Fatalf("no interrupted session.end: %s", ev)
	}
}

// TestRecordingUnavailableFailsClosed: when recordings cannot be written,
// recorded sessions are refused with a clear message while passthrough
// forwarding and other users keep working, and /readyz says why.
func TestRecordingUnavailableFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	recDir := filepath.Join(env.srv.DataDir, "recordings")
	if err := os.Rename(recDir, recDir+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recDir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 60*time.Second)
	out, err := env.alice.SSH(ctx, "root", "web-1", "echo SHOULD-NOT-RUN")
	if err == nil || strings.Contains(out, "SHOULD-NOT-RUN") {
		t.Fatalf("recorded session ran without a recording: %q", out)
	}
	if !strings.Contains(env.srv.Proc.Out.String(), "recordings cannot be written") {
		t.Fatal("the refusal was not logged with its cause")
	}
	if out, err := env.alice.SSH(ctx, "root", "web-raw", "echo raw-still-ok"); err != nil || !strings.Contains(out, "raw-still-ok") {
		t.Fatalf("passthrough stopped working: %v %q", err, out)
	}
	resp, err := harness.TLSClient(t, env.srv.CAFile).Get(env.srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("/readyz = %d while recordings are unwritable", resp.StatusCode)
	}
	// Repaired: recorded sessions work again.
	os.Remove(recDir)
	os.Rename(recDir+".moved", recDir)
	if out, err := env.alice.SSH(ctx, "root", "web-1", "echo recorded-again"); err != nil || !strings.Contains(out, "recorded-again") {
		t.Fatalf("after repair: %v %q", err, out)
	}
}

// TestIdPDown: with the identity provider unreachable, a login fails with a
// clear error and certificates already issued keep working.
func TestIdPDown(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	env.idp.Stop()
	out, err := env.alice.JG(t, "login", "--device", "--no-agent")
	if err == nil || !strings.Contains(out, "jumpgate: ") || strings.Count(strings.TrimSpace(out), "\n") > 3 {
		t.Fatalf("login with the IdP down: %v\n%s", err, out)
	}
	ctx := ctxT(t, 60*time.Second)
	if out, err := env.alice.SSH(ctx, "root", "web-1", "echo still-works"); err != nil || !strings.Contains(out, "still-works") {
		t.Fatalf("existing certificate stopped working: %v %q", err, out)
	}
}

// TestDrainOnSIGTERM: running sessions are told the server is going down,
// get a deadline, and end cleanly (ended, not interrupted; recording signed).
func TestDrainOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	term := harness.StartTerminal(t, "ssh", env.alice.SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a prompt", term.Seen("# "))
	env.srv.Restart(t) // SIGTERM, wait, start again on the same data
	if !strings.Contains(term.Output(), "shutting down") {
		t.Fatalf("the user was not told: %q", term.Output())
	}
	term.Wait(t, 30*time.Second)
	var ss []storage.Session
	json.Unmarshal([]byte(env.srv.MustJG(t, "sessions", "list", "--json")), &ss)
	for _, s := range ss {
		if s.Kind == "shell" && (s.Status != storage.SessionEnded || s.SHA256 == "") {
			t.Fatalf("drained session: %+v", s)
		}
	}
	env.srv.MustJG(t, "audit", "verify")
}
