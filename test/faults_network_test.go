package test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			if p, err := strconv.Atoi(d.Name()); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// metric reads one unlabelled sample from the server's /metrics (a fresh
// connection each time, so the reading itself holds no goroutine).
func metric(t *testing.T, srv *harness.Server, name string) float64 {
	t.Helper()
	hc := harness.TLSClient(t, srv.CAFile)
	hc.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := hc.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// settledGoroutines waits for the server's goroutine count to stop moving
// (two equal readings in a row) and returns it.
func settledGoroutines(t *testing.T, srv *harness.Server) float64 {
	t.Helper()
	prev := metric(t, srv, "go_goroutines")
	for i := 0; i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		n := metric(t, srv, "go_goroutines")
		if n == prev {
			return n
		}
		prev = n
	}
	return prev
}

func sessionByID(t *testing.T, srv *harness.Server, pred func(storage.Session) bool) (storage.Session, bool) {
	t.Helper()
	for _, s := range listSessions(t, srv) {
		if pred(s) {
			return s, true
		}
	}
	return storage.Session{}, false
}

// TestTargetOrNetworkDiesMidSession: the target dies under a recorded
// shell, then the client's connection is cut mid-upload, on one gate.
func TestTargetOrNetworkDiesMidSession(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	t.Run("target dies", func(t *testing.T) { targetDies(t, env) })
	t.Run("network cut mid-transfer", func(t *testing.T) { networkCut(t, env) })
}

// targetDies kills the target's sshd processes serving a recorded shell:
// the user is told the connection to the target was lost, the session is
// ended (not left running) with its recording signed, and the gate keeps
// serving.
func targetDies(t *testing.T, env *bastionEnv) {
	term := harness.StartTerminal(t, "ssh", env.alice.SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a shell prompt", term.Seen("#"))
	term.Type("echo alive-$((2+3))\r")
	harness.WaitFor(t, 30*time.Second, "the output", term.Seen("alive-5"))
	before := len(childPIDs(env.sshdPID))
	if before == 0 {
		t.Fatal("no sshd process serves the session")
	}
	for _, pid := range childPIDs(env.sshdPID) {
		syscall.Kill(pid, syscall.SIGKILL) // the target dies: its connections drop
	}
	harness.WaitFor(t, 30*time.Second, "the gate to tell the user", term.Seen("jumpgate: session ended: the connection to the target was lost"))
	term.Wait(t, 30*time.Second)
	s, _ := sessionByID(t, env.srv, func(s storage.Session) bool { return s.Kind == "shell" })
	if s.Status != storage.SessionEnded || s.SHA256 == "" || !strings.Contains(s.EndReason, "target") {
		t.Fatalf("session after the target died: %+v", s)
	}
	if cast := env.srv.MustJG(t, "sessions", "export", s.ID); !strings.Contains(checkCast(t, cast), "alive-5") {
		t.Fatal("the recording lost the session")
	}
	ctx := ctxT(t, 60*time.Second)
	if out, err := env.dave.SSH(ctx, "root", "web-1", "echo others-served"); err != nil || !strings.Contains(out, "others-served") {
		t.Fatalf("the gate stopped serving: %v %q", err, out)
	}
	env.srv.MustJG(t, "audit", "verify")
}

// zeros is an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// networkCut kills the client's ssh processes (its TCP connection to the
// bastion drops) in the middle of an upload through a recorded target: the
// session ends with its recording closed and signed, and the server's
// goroutines go back to where they were.
func networkCut(t *testing.T, env *bastionEnv) {
	ctx := ctxT(t, 60*time.Second)
	// Warm up (first connection's one-time allocations), then measure.
	if out, err := env.alice.SSH(ctx, "root", "web-1", "true"); err != nil {
		t.Fatalf("warm-up: %v %s", err, out)
	}
	base := settledGoroutines(t, env.srv)

	cmd := exec.Command("ssh", append(env.alice.SSHArgs("root", "web-1"), "cat > /dev/null")...)
	cmd.Stdin = zeros{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waited sync.WaitGroup
	waited.Add(1)
	go func() {
		defer waited.Done()
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		waited.Wait()
	})
	// Mid-transfer: the session runs and bytes are flowing.
	harness.WaitFor(t, 30*time.Second, "the upload to be under way", func() bool {
		s, ok := sessionByID(t, env.srv, func(s storage.Session) bool { return s.Command == "cat > /dev/null" })
		return ok && s.Status == storage.SessionRunning
	})
	time.Sleep(500 * time.Millisecond) // let some megabytes pass
	// The cut: the ProxyJump ssh holding the TCP connection, then ssh.
	for _, pid := range childPIDs(cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = cmd.Process.Kill()
	waited.Wait()

	harness.WaitFor(t, 30*time.Second, "the session to end", func() bool {
		s, ok := sessionByID(t, env.srv, func(s storage.Session) bool { return s.Command == "cat > /dev/null" })
		return ok && s.Status == storage.SessionEnded
	})
	s, _ := sessionByID(t, env.srv, func(s storage.Session) bool { return s.Command == "cat > /dev/null" })
	if s.SHA256 == "" || s.Bytes == 0 {
		t.Fatalf("cut session: %+v", s)
	}
	if got := harness.SHA256File(t, filepath.Join(env.srv.DataDir, "recordings", s.Recording)); got != s.SHA256 {
		t.Fatalf("recording %s does not match its signed hash %s", got, s.SHA256)
	}
	// No goroutine outlives the session.
	var n float64
	harness.WaitFor(t, 30*time.Second, "the server's goroutines to return to their level", func() bool {
		n = settledGoroutines(t, env.srv)
		return n <= base
	})
	t.Logf("goroutines: %v before, %v after", base, n)
	if out, err := env.alice.SSH(ctx, "root", "web-1", "echo still-served"); err != nil || !strings.Contains(out, "still-served") {
		t.Fatalf("after the cut: %v %q", err, out)
	}
}

// TestPostgresDiesMidQuery stops PostgreSQL (fast shutdown) while a query
// runs through the forwarder: psql gets a clear error, the forwarder's
// session is audited as ended with the cause, and the gate keeps serving.
func TestPostgresDiesMidQuery(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	pg := pgtest.Start(t, pgtest.Options{})
	pwFile := filepath.Join(t.TempDir(), "orders.pw")
	os.WriteFile(pwFile, []byte(pgtest.ScramPassword+"\n"), 0o600)
	idp := harness.StartIdP(t)
	srv := harness.StartServer(t, harness.ServerOptions{IdP: idp, Policy: postgresPolicy, Targets: []harness.Target{{
		Name: "orders-db", Kind: "postgres", Address: pg.Addr,
		Extra: "    database: " + pgtest.Database + "\n    credentials: {user: " + pgtest.ScramUser + ", password_file: " + pwFile + "}\n    tls: disable\n",
	}}})
	bob := srv.Login(t, "bob")
	lport := harness.FreePort(t)
	sshTunnel(t, bob.SSHConfig, lport, "orders-db:5432")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	type result struct {
		r   pgtest.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := pgtest.Psql(ctx, lport, "bob", "ignored", "", "-A", "-t", "-c", "SELECT 'mid-query', pg_sleep(60)")
		done <- result{r, err}
	}()
	harness.WaitFor(t, 30*time.Second, "the query to run", func() bool {
		out, _ := pg.SuperSQL("postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%mid-query%' AND pid <> pg_backend_pid()")
		return strings.TrimSpace(out) == "1"
	})
	if err := syscall.Kill(pg.PID(), syscall.SIGINT); err != nil { // fast shutdown
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("psql: %v", res.err)
	}
	t.Logf("psql: exit %d, stderr %q", res.r.ExitCode, res.r.Stderr)
	if res.r.ExitCode == 0 || !strings.Contains(res.r.Stderr, "terminat") && !strings.Contains(res.r.Stderr, "jumpgate") {
		t.Fatalf("psql when PostgreSQL stopped: %+v", res.r)
	}
	harness.WaitFor(t, 30*time.Second, "the forwarder session's end in the audit log", func() bool {
		for _, e := range auditOf(t, srv, "forward.end") {
			if e.Target == "orders-db" && e.Details["error"] != nil {
				return true
			}
		}
		return false
	})
	// The gate keeps serving: the bastion and the API answer.
	if out, err := harness.Run(ctx, nil, "ssh", "-F", bob.SSHConfig, "jumpgate"); err != nil || !strings.Contains(out, "jumpgate bastion") {
		t.Fatalf("bastion after PostgreSQL died: %v %q", err, out)
	}
	srv.MustJG(t, "audit", "verify")
}
