//go:build linux

package localshell

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

func TestExec(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	var seq strings.Builder
	for i := 1; i <= 200000; i++ {
		fmt.Fprintf(&seq, "%d\n", i)
	}
	tests := []struct {
		name       string
		cmd        string
		wantOut    string
		wantErr    string
		wantStatus int
	}{
		{name: "echo", cmd: "echo hi", wantOut: "hi\n"},
		{name: "exit status", cmd: "exit 3", wantStatus: 3},
		{name: "stderr separate", cmd: "echo out; echo err >&2; exit 1", wantOut: "out\n", wantErr: "err\n", wantStatus: 1},
		{name: "output drained before exit status", cmd: "seq 1 200000", wantOut: seq.String()},
		{name: "environment", cmd: `echo "$HOME|$USER|$LOGNAME|$SHELL|${PATH:+path}|$(printenv TERM || echo noterm)"; pwd`,
			wantOut: fmt.Sprintf("%[1]s|%[2]s|%[2]s|/bin/bash|path|noterm\n%[1]s\n", mustHome(t), selfTarget(t).User)},
		{name: "no stdin", cmd: "cat; echo done", wantOut: "done\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sess := newSession(t, c)
			var stdout, stderr bytes.Buffer
			sess.Stdout, sess.Stderr = &stdout, &stderr
			sess.Stdin = strings.NewReader("")
			err := sess.Run(tc.cmd)
			status := 0
			var ee *gossh.ExitError
			if errors.As(err, &ee) {
				status = ee.ExitStatus()
				if ee.Signal() != "" {
					t.Fatalf("killed by %s", ee.Signal())
				}
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d", status, tc.wantStatus)
			}
			if stdout.String() != tc.wantOut {
				t.Errorf("stdout = %.200q (%d bytes), want %.200q (%d bytes)", stdout.String(), stdout.Len(), tc.wantOut, len(tc.wantOut))
			}
			if stderr.String() != tc.wantErr {
				t.Errorf("stderr = %q, want %q", stderr.String(), tc.wantErr)
			}
		})
	}
}

func mustHome(t *testing.T) string {
	t.Helper()
	s := New(nil)
	defer s.Close()
	a, err := s.resolveAccount(selfTarget(t))
	if err != nil {
		t.Fatal(err)
	}
	return a.dir
}

func TestStdinEOF(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	sess := newSession(t, c)
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("cat"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil { // EOF: cat must see it and exit
		t.Fatal(err)
	}
	if err := waitSession(t, sess); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got, want := sha256.Sum256(out.Bytes()), sha256.Sum256(data); got != want {
		t.Fatalf("output: %d bytes, sha256 %x; want %d bytes, sha256 %x", out.Len(), got, len(data), want)
	}
}

// syncRequests waits until the server has handled every request sent
// before on this session: requests are handled in order, and this one
// wants a reply (a refusal).
func syncRequests(t *testing.T, sess *gossh.Session) {
	t.Helper()
	if ok, err := sess.SendRequest("sync@jumpgate.test", true, nil); err != nil || ok {
		t.Fatalf("sync request: ok=%v err=%v", ok, err)
	}
}

func TestPTYShellWindowChange(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	sess := newSession(t, c)
	out := newSyncBuffer()
	sess.Stdout = out
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{gossh.ECHO: 1}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(in, "stty size; echo SIZE-DONE-$((6*7))\n")
	out.waitFor(t, "the first size", func(s string) bool { return strings.Contains(s, "SIZE-DONE-42") })
	if got := out.String(); !strings.Contains(got, "24 80") {
		t.Fatalf("initial size missing: %q", got)
	}
	if err := sess.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	syncRequests(t, sess)
	fmt.Fprintf(in, "stty size; echo SIZE-DONE-$((6*8))\n")
	got := out.waitFor(t, "the new size", func(s string) bool { return strings.Contains(s, "SIZE-DONE-48") })
	if !strings.Contains(got, "50 132\r\n") {
		t.Fatalf("new size missing: %q", got)
	}
	fmt.Fprintf(in, "exit 7\n")
	var ee *gossh.ExitError
	if err := waitSession(t, sess); !errors.As(err, &ee) || ee.ExitStatus() != 7 {
		t.Fatalf("Wait = %v, want exit status 7", err)
	}
}

func TestPTYExec(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	tests := []struct {
		name, term, cmd, want string
	}{
		{name: "TERM", term: "xterm-256color", cmd: "echo $TERM", want: "xterm-256color\r\n"},
		{name: "is a tty", term: "vt100", cmd: "test -t 0 && test -t 1 && echo tty", want: "tty\r\n"},
		{name: "controlling tty", term: "vt100", cmd: "exec 3</dev/tty && echo ctty", want: "ctty\r\n"},
		{name: "login shell only for shells", term: "vt100", cmd: "shopt -q login_shell && echo login || echo notlogin", want: "notlogin\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sess := newSession(t, c)
			if err := sess.RequestPty(tc.term, 24, 80, gossh.TerminalModes{}); err != nil {
				t.Fatal(err)
			}
			out, err := sess.Output(tc.cmd)
			if err != nil {
				t.Fatalf("Output: %v (%q)", err, out)
			}
			if string(out) != tc.want {
				t.Fatalf("output = %q, want %q", out, tc.want)
			}
		})
	}
}

func TestPTYModes(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	sess := newSession(t, c)
	modes := gossh.TerminalModes{gossh.ECHO: 0, gossh.VINTR: 7, gossh.ONLCR: 0}
	if err := sess.RequestPty("vt100", 24, 80, modes); err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("stty -a")
	if err != nil {
		t.Fatalf("Output: %v", err)
	}
	for _, want := range []string{"intr = ^G", "-echo ", "-onlcr"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("stty -a lacks %q:\n%s", want, out)
		}
	}
}

func TestLoginShell(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	sess := newSession(t, c)
	out := newSyncBuffer()
	sess.Stdout = out
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil { // no pty: pipes, as `ssh -T`
		t.Fatal(err)
	}
	fmt.Fprintf(in, "shopt -q login_shell && echo login; echo $0\n")
	in.Close()
	if err := waitSession(t, sess); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got := out.String(); !strings.HasSuffix(got, "login\n-bash\n") {
		t.Fatalf("output = %q, want a login shell named -bash", got)
	}
}

func TestEnvAllowlist(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	sess := newSession(t, c)
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"LANG", "C.UTF-8", true},
		{"LC_ALL", "C", true},
		{"TZ", "UTC", true},
		{"COLORTERM", "truecolor", true},
		{"FOO", "bar", false},
		{"LD_PRELOAD", "/tmp/x.so", false},
		{"PATH", "/tmp", false},
		{"HOME", "/tmp", false},
		{"LC_", "x", false},
		{"lc_all", "C", false},
	}
	for _, tc := range tests {
		err := sess.Setenv(tc.name, tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("Setenv(%s) = %v, want accepted=%v", tc.name, err, tc.ok)
		}
	}
	out, err := sess.Output(`printf '%s|%s|%s|%s|%s|%s' "$LANG" "$LC_ALL" "$TZ" "$COLORTERM" "${FOO-unset}" "${LD_PRELOAD-unset}"; [ "$PATH" != /tmp ] && echo "|pathkept"`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "C.UTF-8|C|UTC|truecolor|unset|unset|pathkept\n"; string(out) != want {
		t.Fatalf("output = %q, want %q", out, want)
	}
}

func TestSignal(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	for _, sig := range []gossh.Signal{gossh.SIGTERM, gossh.SIGHUP, gossh.SIGKILL, gossh.SIGUSR1, gossh.SIGINT} {
		t.Run(string(sig), func(t *testing.T) {
			sess := newSession(t, c)
			if err := sess.Start("sleep 100"); err != nil {
				t.Fatal(err)
			}
			if err := sess.Signal(sig); err != nil {
				t.Fatal(err)
			}
			var ee *gossh.ExitError
			err := waitSession(t, sess)
			if !errors.As(err, &ee) || ee.Signal() != string(sig) {
				t.Fatalf("Wait = %v, want exit-signal %s", err, sig)
			}
		})
	}
	t.Run("whole process group", func(t *testing.T) {
		// The background sleep holds stdout open: the session can only
		// end if it is signalled too.
		sess := newSession(t, c)
		if err := sess.Start("sleep 100 & sleep 100; wait"); err != nil {
			t.Fatal(err)
		}
		if err := sess.Signal(gossh.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var ee *gossh.ExitError
		if err := waitSession(t, sess); !errors.As(err, &ee) || ee.Signal() != "TERM" {
			t.Fatalf("Wait = %v, want exit-signal TERM", err)
		}
	})
	t.Run("unknown signal refused", func(t *testing.T) {
		sess := newSession(t, c)
		if err := sess.Start("sleep 100"); err != nil {
			t.Fatal(err)
		}
		payload := gossh.Marshal(&struct{ Signal string }{"STOP"})
		if ok, err := sess.SendRequest("signal", true, payload); err != nil || ok {
			t.Fatalf("signal STOP: ok=%v err=%v, want refused", ok, err)
		}
		if err := sess.Signal(gossh.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var ee *gossh.ExitError
		if err := waitSession(t, sess); !errors.As(err, &ee) || ee.Signal() != "KILL" {
			t.Fatalf("Wait = %v, want exit-signal KILL", err)
		}
	})
}

func TestBreak(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	breakReq := gossh.Marshal(&struct{ Length uint32 }{500})

	t.Run("pty", func(t *testing.T) {
		sess := newSession(t, c)
		if err := sess.RequestPty("vt100", 24, 80, gossh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
		if err := sess.Start("sleep 100"); err != nil {
			t.Fatal(err)
		}
		if ok, err := sess.SendRequest("break", true, breakReq); err != nil || !ok {
			t.Fatalf("break: ok=%v err=%v", ok, err)
		}
		var ee *gossh.ExitError
		if err := waitSession(t, sess); !errors.As(err, &ee) || ee.Signal() != "INT" {
			t.Fatalf("Wait = %v, want exit-signal INT", err)
		}
	})
	t.Run("no pty refused", func(t *testing.T) {
		sess := newSession(t, c)
		if err := sess.Start("sleep 100"); err != nil {
			t.Fatal(err)
		}
		if ok, err := sess.SendRequest("break", true, breakReq); err != nil || ok {
			t.Fatalf("break: ok=%v err=%v, want refused", ok, err)
		}
		_ = sess.Signal(gossh.SIGKILL)
		_ = waitSession(t, sess)
	})
}

func TestSFTP(t *testing.T) {
	s := newTestServer(t)
	if s.sftpServer() == "" {
		t.Fatalf("no sftp-server in %v: apt-get install -y openssh-sftp-server", s.sftpServers)
	}
	c := connect(t, s, selfTarget(t))
	sess := newSession(t, c)
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	// SSH_FXP_INIT, version 3 (draft-ietf-secsh-filexfer-02).
	if _, err := in.Write([]byte{0, 0, 0, 5, 1, 0, 0, 0, 3}); err != nil {
		t.Fatal(err)
	}
	var hdr [9]byte
	if _, err := io.ReadFull(out, hdr[:]); err != nil {
		t.Fatal(err)
	}
	length := binary.BigEndian.Uint32(hdr[:4])
	if typ, version := hdr[4], binary.BigEndian.Uint32(hdr[5:]); typ != 2 || version != 3 || length < 5 {
		t.Fatalf("reply: length %d type %d version %d, want SSH_FXP_VERSION (2) version 3", length, typ, version)
	}
	in.Close() // EOF ends sftp-server, then its channel
	if _, err := io.Copy(io.Discard, out); err != nil {
		t.Fatal(err)
	}
}

func TestSubsystemRefused(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	t.Run("unknown subsystem", func(t *testing.T) {
		sess := newSession(t, c)
		if err := sess.RequestSubsystem("netconf"); err == nil {
			t.Fatal("netconf accepted")
		}
	})
	t.Run("sftp-server missing", func(t *testing.T) {
		s := newTestServer(t)
		s.sftpServers = []string{t.TempDir() + "/sftp-server"}
		sess := newSession(t, connect(t, s, selfTarget(t)))
		if err := sess.RequestSubsystem("sftp"); err == nil {
			t.Fatal("sftp accepted without an sftp-server")
		}
	})
}

func TestRefusedRequests(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	if _, _, err := c.OpenChannel("direct-tcpip", gossh.Marshal(&struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}{"127.0.0.1", 22, "127.0.0.1", 1})); err == nil {
		t.Error("direct-tcpip channel accepted")
	}
	if ok, _, err := c.SendRequest("tcpip-forward", true, gossh.Marshal(&struct {
		Addr string
		Port uint32
	}{"127.0.0.1", 0})); err != nil || ok {
		t.Errorf("tcpip-forward: ok=%v err=%v, want refused", ok, err)
	}
	sess := newSession(t, c)
	for _, typ := range []string{"x11-req", "auth-agent-req@openssh.com"} {
		if ok, err := sess.SendRequest(typ, true, nil); err != nil || ok {
			t.Errorf("%s: ok=%v err=%v, want refused", typ, ok, err)
		}
	}
	if err := sess.Run("true"); err != nil {
		t.Fatal(err)
	}
	// A second command on a used session is refused.
	if ok, err := sess.SendRequest("exec", true, gossh.Marshal(&struct{ Cmd string }{"true"})); err == nil && ok {
		t.Error("second exec accepted")
	}
}

func TestOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another account needs root")
	}
	name := fmt.Sprintf("jgls%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil {
			t.Logf("userdel: %v: %s", err, out)
		}
	})
	s := newTestServer(t)
	tg := Target{Name: "other", User: name} // Shell empty: the account's login shell, /bin/sh
	c := connect(t, s, tg)

	t.Run("exec", func(t *testing.T) {
		sess := newSession(t, c)
		out, err := sess.Output(`id -un; id -u; pwd; echo "$HOME $SHELL"`)
		if err != nil {
			t.Fatalf("Output: %v (%q)", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 4 || lines[0] != name || lines[1] == "0" || lines[2] != "/home/"+name || lines[3] != "/home/"+name+" /bin/sh" {
			t.Fatalf("output = %q", out)
		}
	})
	t.Run("pty", func(t *testing.T) {
		sess := newSession(t, c)
		if err := sess.RequestPty("vt100", 24, 80, gossh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
		out, err := sess.Output(`id -un; stat -c '%U %a' "$(tty)"`)
		if err != nil {
			t.Fatalf("Output: %v (%q)", err, out)
		}
		if want := name + "\r\n" + name + " 620\r\n"; string(out) != want {
			t.Fatalf("output = %q, want %q", out, want)
		}
	})
	t.Run("cannot become root", func(t *testing.T) {
		sess := newSession(t, c)
		out, err := sess.CombinedOutput("cat /etc/shadow")
		if err == nil {
			t.Fatalf("read /etc/shadow as %s: %q", name, out)
		}
	})
}

var pidRE = regexp.MustCompile(`PID=(\d+)`)

func TestCloseKillsShell(t *testing.T) {
	s := New(nil)
	// The shell will ignore SIGHUP: Close must fall back to SIGKILL.
	s.killGrace = 50 * time.Millisecond
	c, err := s.Connect(context.Background(), selfTarget(t), selfTarget(t).User)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out := newSyncBuffer()
	sess.Stdout = out
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(in, "trap '' HUP; echo PID=$$\n")
	got := out.waitFor(t, "the shell's pid", func(s string) bool { return pidRE.MatchString(s) })
	pid, _ := strconv.Atoi(pidRE.FindStringSubmatch(got)[1])
	if !processExists(pid) {
		t.Fatalf("shell %d not running", pid)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has reaped the shell: not even a zombie is left.
	if processExists(pid) {
		t.Fatalf("shell %d still exists after Close", pid)
	}
	if err := waitSession(t, sess); err == nil {
		t.Fatal("session ended without an error after Close")
	}
	if _, err := s.Connect(context.Background(), selfTarget(t), selfTarget(t).User); !errors.Is(err, ErrClosed) {
		t.Fatalf("Connect after Close = %v, want ErrClosed", err)
	}
}

func TestContextCancelKills(t *testing.T) {
	s := New(nil)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := s.Connect(ctx, selfTarget(t), selfTarget(t).User)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out := newSyncBuffer()
	sess.Stdout = out
	if err := sess.Start("echo PID=$$; exec sleep 100"); err != nil {
		t.Fatal(err)
	}
	got := out.waitFor(t, "the pid", func(s string) bool { return pidRE.MatchString(s) })
	pid, _ := strconv.Atoi(pidRE.FindStringSubmatch(got)[1])
	cancel()
	if err := waitSession(t, sess); err == nil {
		t.Fatal("session ended without an error after cancel")
	}
	s.Close() // joins the session, which reaped the process
	if processExists(pid) {
		t.Fatalf("process %d still exists", pid)
	}
}

func TestClientCloseKills(t *testing.T) {
	s := New(nil)
	defer s.Close()
	c, err := s.Connect(context.Background(), selfTarget(t), selfTarget(t).User)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out := newSyncBuffer()
	sess.Stdout = out
	if err := sess.Start("echo PID=$$; exec sleep 100"); err != nil {
		t.Fatal(err)
	}
	got := out.waitFor(t, "the pid", func(s string) bool { return pidRE.MatchString(s) })
	pid, _ := strconv.Atoi(pidRE.FindStringSubmatch(got)[1])
	c.Close()
	s.Close()
	if processExists(pid) {
		t.Fatalf("process %d still exists", pid)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	s := New(nil)
	c, err := s.Connect(context.Background(), selfTarget(t), selfTarget(t).User)
	if err != nil {
		t.Fatal(err)
	}
	for _, pty := range []bool{false, true} {
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if pty {
			if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := sess.Output("echo hi"); err != nil {
			t.Fatal(err)
		}
	}
	running, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := running.Start("sleep 100"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has joined every goroutine of the Server: none is left running
	// code of this package.
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		// Only the frames the goroutine is running count: its "created by"
		// line names a function of this package even in the instant after
		// it returned (runtime.goexit1), which Close does not wait out.
		frames, _, _ := strings.Cut(g, "\ncreated by ")
		if strings.Contains(frames, "localshell.(*") || strings.Contains(frames, "localshell.waitExited") {
			t.Errorf("goroutine left after Close:\n%s", g)
		}
	}
	c.Close()
	// The client's own goroutines end as its connection closes.
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

func TestConnectErrors(t *testing.T) {
	s := newTestServer(t)
	self := selfTarget(t)
	tests := []struct {
		name   string
		target Target
		login  string
		want   error
	}{
		{"login mismatch", self, "someoneelse", ErrLoginMismatch},
		{"empty user", Target{Name: "x"}, "", ErrInvalidTarget},
		{"unknown user", Target{Name: "x", User: "jg-no-such-user"}, "jg-no-such-user", ErrUnknownUser},
		{"relative shell", Target{Name: "x", User: self.User, Shell: "bash"}, self.User, ErrInvalidTarget},
		{"missing shell", Target{Name: "x", User: self.User, Shell: "/nonexistent/sh"}, self.User, ErrInvalidTarget},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.Connect(context.Background(), tc.target, tc.login)
			if !errors.Is(err, tc.want) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("Connect = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if c, err := s.Connect(ctx, self, self.User); err == nil {
			c.Close()
			t.Fatal("Connect with a cancelled context succeeded")
		}
	})
}

func TestCredentialFor(t *testing.T) {
	tests := []struct {
		name      string
		euid, cur int
		uid, gid  int
		wantCred  bool
		wantErr   error
	}{
		{name: "root runs root", euid: 0, cur: 0, uid: 0, gid: 0},
		{name: "root runs another account", euid: 0, cur: 0, uid: 1000, gid: 1000, wantCred: true},
		{name: "user runs itself", euid: 1000, cur: 1000, uid: 1000, gid: 1000},
		{name: "user cannot run another", euid: 1000, cur: 1000, uid: 1001, gid: 1001, wantErr: ErrNotPermitted},
		{name: "user cannot run root", euid: 1000, cur: 1000, uid: 0, gid: 0, wantErr: ErrNotPermitted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := credentialFor(tc.euid, tc.cur, "acct", tc.uid, tc.gid, []uint32{4, 27})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if (cred != nil) != tc.wantCred {
				t.Fatalf("cred = %+v, want one: %v", cred, tc.wantCred)
			}
			if cred != nil && (int(cred.Uid) != tc.uid || int(cred.Gid) != tc.gid || len(cred.Groups) != 2) {
				t.Fatalf("cred = %+v", cred)
			}
		})
	}
}

func TestLoginShellLookup(t *testing.T) {
	path := t.TempDir() + "/passwd"
	passwd := "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/zsh\nbroken:x:1\nbob:x:1001:1001::/home/bob:\n"
	if err := os.WriteFile(path, []byte(passwd), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"root": "/bin/bash", "alice": "/bin/zsh", "bob": "", "broken": "", "nobody": ""} {
		if got := loginShell(path, name); got != want {
			t.Errorf("loginShell(%q) = %q, want %q", name, got, want)
		}
	}
	if got := loginShell(t.TempDir()+"/missing", "root"); got != "" {
		t.Errorf("missing file: %q", got)
	}
}

func TestChannelCloseKills(t *testing.T) {
	s := newTestServer(t)
	c := connect(t, s, selfTarget(t))
	for _, pty := range []bool{false, true} {
		t.Run(fmt.Sprintf("pty=%v", pty), func(t *testing.T) {
			sess := newSession(t, c)
			out := newSyncBuffer()
			sess.Stdout = out
			if pty {
				if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := sess.Start("echo PID=$$; exec sleep 100"); err != nil {
				t.Fatal(err)
			}
			got := out.waitFor(t, "the pid", func(s string) bool { return pidRE.MatchString(s) })
			pid, _ := strconv.Atoi(pidRE.FindStringSubmatch(got)[1])
			pidfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pidfd)
			if err := sess.Close(); err != nil {
				t.Fatal(err)
			}
			// A pidfd becomes readable when its process exits.
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			for {
				n, err := unix.Poll(fds, int(testTimeout/time.Millisecond))
				if errors.Is(err, unix.EINTR) {
					continue
				}
				if err != nil || n != 1 {
					t.Fatalf("process %d still running after the channel closed (poll: %d, %v)", pid, n, err)
				}
				break
			}
		})
	}
}

func TestCloseWithJobHoldingPTY(t *testing.T) {
	s := New(nil)
	s.killGrace = 50 * time.Millisecond
	c, err := s.Connect(context.Background(), selfTarget(t), selfTarget(t).User)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out := newSyncBuffer()
	sess.Stdout = out
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	// A job in its own process group (job control), ignoring SIGHUP and
	// holding the pty: it survives the group kill, as under sshd, but must
	// not keep Close waiting.
	fmt.Fprintf(in, "set -m; (trap '' HUP; exec sleep 1000) & echo PID=$!\n")
	got := out.waitFor(t, "the job's pid", func(s string) bool { return pidRE.MatchString(s) })
	job, _ := strconv.Atoi(pidRE.FindStringSubmatch(got)[1])
	t.Cleanup(func() { _ = unix.Kill(job, unix.SIGKILL) })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Close did not return while a job held the pty")
	}
}
