package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

func init() {
	register(Benchmark{ID: "4", Rows: []string{"4b", "4c", "4d"}, Title: "idle recorded sessions: memory; keystroke echo", Run: runSessions})
}

// openConcurrency bounds the handshakes in flight while sessions open.
const openConcurrency = 16

// shellSession is an interactive shell with a pty through a jump host,
// opened in process the way `ssh -J … -t` opens it.
type shellSession struct {
	jc    *jumpClient
	sess  *ssh.Session
	stdin io.WriteCloser
	out   chan []byte // output chunks; closed at EOF
	wg    sync.WaitGroup
}

func (e *Env) openShell(r route) (*shellSession, error) {
	jc, err := e.dialJump(r)
	if err != nil {
		return nil, err
	}
	s := &shellSession{jc: jc, out: make(chan []byte, 64)}
	fail := func(err error) (*shellSession, error) {
		jc.Close()
		s.wg.Wait()
		return nil, err
	}
	if s.sess, err = jc.inner.NewSession(); err != nil {
		return fail(fmt.Errorf("bench: session: %w", err))
	}
	if s.stdin, err = s.sess.StdinPipe(); err != nil {
		return fail(err)
	}
	stdout, err := s.sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := s.sess.RequestPty("xterm", 50, 200, ptyModes); err != nil {
		return fail(fmt.Errorf("bench: pty-req: %w", err))
	}
	if err := s.sess.Shell(); err != nil {
		return fail(fmt.Errorf("bench: shell: %w", err))
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.out)
		for {
			buf := make([]byte, 32<<10)
			n, err := stdout.Read(buf)
			if n > 0 {
				s.out <- buf[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return s, nil
}

// waitFor reads output until it contains want (across chunk borders) or
// the timeout passes, and returns how many bytes it read.
func (s *shellSession) waitFor(want []byte, timeout time.Duration) (int64, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var tail []byte
	var n int64
	for {
		select {
		case b, ok := <-s.out:
			if !ok {
				return n, fmt.Errorf("bench: session ended before %q", want)
			}
			n += int64(len(b))
			tail = append(tail, b...)
			if bytes.Contains(tail, want) {
				return n, nil
			}
			if k := len(want) - 1; len(tail) > k {
				tail = append(tail[:0:0], tail[len(tail)-k:]...)
			}
		case <-timer.C:
			return n, fmt.Errorf("bench: no %q within %v", want, timeout)
		}
	}
}

// idle drains output in the background so the session never stalls.
func (s *shellSession) idle() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for range s.out {
		}
	}()
}

func (s *shellSession) Close() {
	s.jc.Close()
	s.wg.Wait()
}

func runSessions(ctx context.Context, e *Env) ([]Row, error) {
	n := e.Flags.Sessions
	rec, ref := e.jgRoute(recordedTarget), e.refRoute()
	memRSS := Row{ID: "4", Title: "memory per idle recorded session (RSS delta ÷ sessions)", Unit: "MB", RefName: "(OpenSSH -J: Σ sshd RSS)"}
	memPSS := Row{ID: "4b", Title: "memory per idle recorded session (PSS delta ÷ sessions)", Unit: "MB", RefName: "(OpenSSH -J: Σ sshd PSS)"}
	var reachedJG, reachedRef, leaked []int
	for round := 0; round < e.Flags.SessionRounds; round++ {
		// jumpgate: a freshly started server, so that the heap of earlier
		// benchmarks and rounds is not in the baseline.
		if err := catch(func() { e.Server.Restart(e.TB) }); err != nil {
			return nil, err
		}
		pid := e.Server.Proc.Cmd.Process.Pid
		rss0, pss0, _ := treeMem(pid)
		sessions, err := e.openMany(ctx, rec, n)
		if len(sessions) == 0 {
			return nil, err
		}
		settle()
		rss1, pss1, _ := treeMem(pid)
		reachedJG = append(reachedJG, len(sessions))
		memRSS.JG = append(memRSS.JG, float64(rss1-rss0)/1024/float64(len(sessions)))
		memPSS.JG = append(memPSS.JG, float64(pss1-pss0)/1024/float64(len(sessions)))
		e.Log.Info("jumpgate sessions", "round", round+1, "open", len(sessions), "rss_delta_MB", num(float64(rss1-rss0)/1024), "err", err)
		e.closeMany(sessions)
		// Upstream connections the bastion still holds to the target after
		// its clients left; a restart clears them before the next arm.
		leaked = append(leaked, len(descendants(e.Target.PID)))
		if err := catch(func() { e.Server.Restart(e.TB) }); err != nil {
			return nil, err
		}

		// OpenSSH jump host: all sshd processes below the listener.
		rss0, pss0, procs0 := treeMem(e.RefJump.PID)
		sessions, err = e.openMany(ctx, ref, n)
		if len(sessions) == 0 {
			return nil, err
		}
		settle()
		rss1, pss1, procs1 := treeMem(e.RefJump.PID)
		reachedRef = append(reachedRef, len(sessions))
		memRSS.Ref = append(memRSS.Ref, float64(rss1-rss0)/1024/float64(len(sessions)))
		memPSS.Ref = append(memPSS.Ref, float64(pss1-pss0)/1024/float64(len(sessions)))
		e.Log.Info("OpenSSH sessions", "round", round+1, "open", len(sessions), "sshd_procs", procs1-procs0, "rss_delta_MB", num(float64(rss1-rss0)/1024), "err", err)
		e.closeMany(sessions)
	}
	method := fmt.Sprintf("%d in-process x/crypto/ssh clients held open at once (each: connection to the jump host, direct-tcpip, inner SSH, pty-req, shell — what `ssh -J -t` does); reached jumpgate %v, OpenSSH %v; jumpgate server freshly restarted per round; OpenSSH: all sshd processes below the jump listener via /proc", n, reachedJG, reachedRef)
	if slices.Max(leaked) > 0 {
		method += fmt.Sprintf("; after the clients closed, the target still had %v sshd processes serving jumpgate's upstream connections (not released by the bastion)", leaked)
	}
	memRSS.Method, memPSS.Method = method, "same sessions; PSS shares the pages sshd processes have in common"

	echoP50, echoP99, err := e.echoLatency(ctx, rec, ref)
	if err != nil {
		return []Row{memRSS, memPSS, {ID: "4c", Title: "keystroke echo latency", Err: err}}, nil
	}
	return []Row{memRSS, memPSS, echoP50, echoP99}, nil
}

// settle gives the servers a moment after the last session opened so
// that lazily allocated per-session state (first prompt, recording
// buffers) is in the measurement. Memory has no event to wait on.
func settle() { time.Sleep(3 * time.Second) }

// openMany opens n idle shells through r with openConcurrency handshakes
// in flight. It returns the sessions it could open and the first error.
func (e *Env) openMany(ctx context.Context, r route, n int) ([]*shellSession, error) {
	var (
		mu       sync.Mutex
		out      []*shellSession
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for w := 0; w < openConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				s, err := e.openShell(r)
				if err == nil {
					// The first prompt proves the shell runs.
					if _, err = s.waitFor([]byte("#"), 60*time.Second); err != nil {
						s.Close()
					}
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
				} else {
					s.idle()
					out = append(out, s)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(out) < n && firstErr == nil {
		firstErr = errors.New("bench: interrupted")
	}
	return out, firstErr
}

func (e *Env) closeMany(ss []*shellSession) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, s := range ss {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.Close()
		}()
	}
	wg.Wait()
	// Let the per-connection processes go before the next arm: the
	// target's shells, the OpenSSH jump host's sshd children.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && (len(descendants(e.RefJump.PID)) > 0 || countShells(e.Target.PID) > 0) {
		time.Sleep(100 * time.Millisecond)
	}
}

// echoLatency times one typed byte until its echo comes back, through a
// recorded jumpgate session and through the OpenSSH jump host, taking
// turns sample by sample. The shell runs `cat`, so the echo is the remote
// pty's own (kernel line discipline), as when typing at a prompt.
func (e *Env) echoLatency(ctx context.Context, jg, ref route) (p50, p99 Row, err error) {
	open := func(r route) (*shellSession, error) {
		s, err := e.openShell(r)
		if err != nil {
			return nil, err
		}
		if _, err := s.waitFor([]byte("#"), time.Minute); err != nil {
			s.Close()
			return nil, err
		}
		if _, err := io.WriteString(s.stdin, "exec cat\n"); err != nil {
			s.Close()
			return nil, err
		}
		// The echoed command line comes back; give cat the terminal.
		if _, err := s.waitFor([]byte("exec cat\r\n"), time.Minute); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	sj, err := open(jg)
	if err != nil {
		return p50, p99, err
	}
	defer sj.Close()
	sr, err := open(ref)
	if err != nil {
		return p50, p99, err
	}
	defer sr.Close()
	sample := func(s *shellSession) (float64, error) {
		start := time.Now()
		if _, err := s.stdin.Write([]byte("x")); err != nil {
			return 0, err
		}
		if _, err := s.waitFor([]byte("x"), 10*time.Second); err != nil {
			return 0, err
		}
		d := time.Since(start)
		// Erase it again (untimed) so the line never grows.
		if _, err := s.stdin.Write([]byte{0x7f}); err != nil {
			return 0, err
		}
		if _, err := s.waitFor([]byte("\b \b"), 10*time.Second); err != nil {
			return 0, err
		}
		return ms(d), nil
	}
	var js, rs []float64
	for i := 0; i < e.Flags.Echo && ctx.Err() == nil; i++ {
		j, err := sample(sj)
		if err != nil {
			return p50, p99, err
		}
		r, err := sample(sr)
		if err != nil {
			return p50, p99, err
		}
		js, rs = append(js, j), append(rs, r)
	}
	method := fmt.Sprintf("%d samples per side, taking turns; in-process client, pty, remote `cat` (kernel echo); recorded jumpgate target vs OpenSSH -J to the same sshd", len(js))
	p50 = Row{ID: "4c", Title: "keystroke echo latency p50, recorded session", Unit: "ms", JG: []float64{quantile(js, .5)}, Ref: []float64{quantile(rs, .5)},
		RefName: "(OpenSSH -J)", Method: method}
	p99 = Row{ID: "4d", Title: "keystroke echo latency p99, recorded session", Unit: "ms", JG: []float64{quantile(js, .99)}, Ref: []float64{quantile(rs, .99)},
		RefName: "(OpenSSH -J)", Method: method}
	return p50, p99, nil
}
