package test

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
)

// mountTmpfs mounts a tmpfs of size (e.g. "2m") on a fresh directory and
// unmounts it when the test ends; it skips the test when mounting is not
// possible here (not root, no CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs for the full-disk test (needs root or CAP_SYS_ADMIN): %v %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the file system is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	// The last partial block too.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return p
}

func listSessions(t *testing.T, srv *harness.Server) []storage.Session {
	t.Helper()
	var ss []storage.Session
	out := srv.MustJG(t, "sessions", "list", "--json")
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		t.Fatalf("sessions list: %v\n%s", err, out)
	}
	return ss
}

type auditEvent struct {
	Type    string         `json:"type"`
	User    string         `json:"user"`
	Target  string         `json:"target"`
	Session string         `json:"session"`
	Details map[string]any `json:"details"`
}

func auditOf(t *testing.T, srv *harness.Server, typ string) []auditEvent {
	t.Helper()
	var es []auditEvent
	out := srv.MustJG(t, "audit", "list", "--json", "--type", typ)
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatalf("audit list: %v\n%s", err, out)
	}
	return es
}

// checkCast parses an exported recording as asciicast v2 (every line
// valid) and returns the concatenated output.
func checkCast(t *testing.T, cast string) string {
	t.Helper()
	d, err := recorder.Parse(strings.NewReader(cast))
	if err != nil {
		t.Fatalf("export is not asciicast v2: %v", err)
	}
	var out strings.Builder
	for {
		e, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("export is not a valid asciicast: %v", err)
		}
		if e.Type == recorder.EventOutput {
			out.WriteString(e.Data)
		}
	}
	if d.Truncated() {
		t.Fatal("export ends in a truncated line")
	}
	return out.String()
}

// TestRecordingDiskFull fills the recordings file system (a 2 MiB tmpfs)
// from a recorded session: the session ends with a clear message, its
// recording is a valid, signed asciicast up to where it stopped, new
// recorded sessions are refused while the disk is full, passthrough and
// the API keep serving, the audit log says why, and recorded sessions work
// again once space is freed.
func TestRecordingDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	recDir := mountTmpfs(t, "2m")
	// Other data on the same disk, which the operator deletes later.
	ballast := filepath.Join(recDir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	env := startBastionEnv(t, "recordings: {dir: "+recDir+"}\n")
	ctx := ctxT(t, 120*time.Second)

	term := harness.StartTerminal(t, "ssh", env.alice.SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a shell prompt", term.Seen("#"))
	term.Type("yes fills-the-disk-$((6*7))\r")
	harness.WaitFor(t, 60*time.Second, "the gate to end the session", term.Seen("jumpgate: session ended: the recording could not be written"))
	term.Wait(t, 30*time.Second)

	var sess storage.Session
	for _, s := range listSessions(t, env.srv) {
		if s.Kind == "shell" {
			sess = s
		}
	}
	if sess.Status != storage.SessionEnded || !strings.Contains(sess.EndReason, "recording") {
		t.Fatalf("session after the disk filled: %+v", sess)
	}
	// The recording is readable up to where it stopped: a valid asciicast
	// whose last complete event is kept, playable, and its file matches
	// the SHA-256 signed into the audit log.
	out := checkCast(t, env.srv.MustJG(t, "sessions", "export", sess.ID))
	if !strings.Contains(out, "fills-the-disk-42") {
		t.Fatalf("the recording lost what ran before the disk filled (%d bytes of output)", len(out))
	}
	if play := env.srv.MustJG(t, "replay", sess.ID, "--speed", "1000", "--idle-limit", "1ms"); !strings.Contains(play, "fills-the-disk-42") {
		t.Fatal("replay does not show the session")
	}
	var end *auditEvent
	for _, e := range auditOf(t, env.srv, "session.end") {
		if e.Session == sess.ID {
			end = &e
		}
	}
	if end == nil || !strings.Contains(end.Details["end_reason"].(string), "recording") || end.Details["recording_error"] == nil {
		t.Fatalf("the audit log does not say why the session ended: %+v", end)
	}
	if got := harness.SHA256File(t, filepath.Join(recDir, sess.Recording)); end.Details["sha256"] != got || sess.SHA256 != got {
		t.Fatalf("signed sha256 %v (index %s) is not the recording file's %s", end.Details["sha256"], sess.SHA256, got)
	}

	// The disk is full: recorded sessions are refused up front, with a
	// clear message, and the refusal is audited.
	filler := fillDisk(t, recDir)
	// (At OpenSSH's default log level, as a user has it: the harness's
	// LogLevel ERROR hides the channel-open failure reason of -J.)
	refused, err := harness.Run(ctx, nil, "ssh", append(verbose(t, env.alice).SSHArgs("root", "web-1"), "echo SHOULD-NOT-RUN")...)
	if err == nil || strings.Contains(refused, "SHOULD-NOT-RUN") || !strings.Contains(refused, "cannot be recorded") {
		t.Fatalf("recorded session with a full disk: %v %q", err, refused)
	}
	found := false
	for _, e := range auditOf(t, env.srv, "auth.failed") {
		found = found || (strings.HasPrefix(e.User, "alice") && e.Details["reason"] == "recording_unavailable")
	}
	if !found {
		t.Fatal("the refusal is not in the audit log")
	}
	// Others keep being served: passthrough, other users, the API.
	if out, err := env.dave.SSH(ctx, "root", "web-raw", "echo raw-still-ok"); err != nil || !strings.Contains(out, "raw-still-ok") {
		t.Fatalf("passthrough with the recordings disk full: %v %q", err, out)
	}
	resp, err := harness.TLSClient(t, env.srv.CAFile).Get(env.srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("/readyz = %d with the recordings disk full", resp.StatusCode)
	}
	// Space freed: recorded sessions work again.
	for _, p := range []string{filler, ballast} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := env.alice.SSH(ctx, "root", "web-1", "echo recorded-again"); err != nil || !strings.Contains(out, "recorded-again") {
		t.Fatalf("after space was freed: %v %q", err, out)
	}
	env.srv.MustJG(t, "audit", "verify")
}

// verbose returns u with an ssh_config at OpenSSH's default log level.
func verbose(t *testing.T, u *harness.User) *harness.User {
	t.Helper()
	b, err := os.ReadFile(u.SSHConfig)
	if err != nil {
		t.Fatal(err)
	}
	v := *u
	v.SSHConfig = u.SSHConfig + "-info"
	if err := os.WriteFile(v.SSHConfig, []byte(strings.ReplaceAll(string(b), "LogLevel ERROR", "LogLevel INFO")), 0o600); err != nil {
		t.Fatal(err)
	}
	return &v
}
