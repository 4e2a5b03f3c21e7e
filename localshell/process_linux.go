//go:build linux

package localshell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// spec says what a session runs and how.
type spec struct {
	path string
	args []string
	env  []string
	dir  string
	cred *syscall.Credential
	pty  *ptyRequest // nil: separate stdin, stdout and stderr pipes
}

// process is one session's child: the leader of its own session and
// process group (Setsid), so the group can be signalled as a whole.
//
// Lock order: session request loop → process.mu. mu guards reaped and the
// master's lifetime; it is never held while waiting for anything.
type process struct {
	cmd   *exec.Cmd
	pid   int
	grace time.Duration

	mu     sync.Mutex
	reaped bool     // the leader was reaped: its pid may be reused, no more group signals
	master *os.File // pty master (input and output), nil without a pty
	stdin  *os.File // our end of the child's stdin pipe, nil with a pty
	// outputs are our read ends: {master} or {stdout, stderr}.
	outputs []*os.File

	wg sync.WaitGroup // copiers and the supervisor
}

var errProcessGone = errors.New("localshell: process has ended")

// startProcess starts sp. On success the child runs; its output waits in the
// pipe or pty until run is called.
func startProcess(sp spec, grace time.Duration) (*process, error) {
	cmd := &exec.Cmd{
		Path:        sp.path,
		Args:        sp.args,
		Env:         sp.env,
		Dir:         sp.dir,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Credential: sp.cred},
	}
	p := &process{cmd: cmd, grace: grace}
	if sp.pty != nil {
		master, tty, err := openPTY(sp.pty, sp.cred)
		if err != nil {
			return nil, err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0 // the child's stdin, the tty
		err = cmd.Start()
		tty.Close()
		if err != nil {
			master.Close()
			return nil, fmt.Errorf("localshell: starting %s: %w", sp.path, err)
		}
		p.master = master
		p.outputs = []*os.File{master}
	} else {
		var files []*os.File // every pipe end, closed on failure
		pipe := func() (r, w *os.File, err error) {
			r, w, err = os.Pipe()
			if err == nil {
				files = append(files, r, w)
			}
			return r, w, err
		}
		closeAll := func() {
			for _, f := range files {
				f.Close()
			}
		}
		inR, inW, err := pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("localshell: pipe: %w", err)
		}
		outR, outW, err := pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("localshell: pipe: %w", err)
		}
		errR, errW, err := pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("localshell: pipe: %w", err)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
		if err := cmd.Start(); err != nil {
			closeAll()
			return nil, fmt.Errorf("localshell: starting %s: %w", sp.path, err)
		}
		inR.Close()
		outW.Close()
		errW.Close()
		p.stdin = inW
		p.outputs = []*os.File{outR, errR}
	}
	p.pid = cmd.Process.Pid
	return p, nil
}

// run relays the process's I/O over ch and reports its end: exit-status, or
// exit-signal when a signal killed it, after every byte of output was sent.
// When ctx ends first the process group gets SIGHUP, then SIGKILL after the
// grace. run returns at once; wait joins what it started.
func (p *process) run(ctx context.Context, ch gossh.Channel, logger *slog.Logger) {
	outDone := make(chan struct{}, len(p.outputs))
	writers := []io.Writer{ch, ch.Stderr()}
	p.wg.Add(2 + len(p.outputs))
	go func() {
		defer p.wg.Done()
		p.copyInput(ch)
	}()
	for i, r := range p.outputs {
		go func() {
			defer p.wg.Done()
			// A pty master reads EIO once the last slave descriptor is
			// closed: that is its end of file.
			_, _ = io.Copy(writers[i], r)
			outDone <- struct{}{}
		}()
	}
	go func() {
		defer p.wg.Done()
		p.supervise(ctx, ch, outDone, logger)
	}()
}

// wait joins the copiers and the supervisor.
func (p *process) wait() { p.wg.Wait() }

// copyInput passes the channel's data to the child. Without a pty the
// channel's EOF closes the child's stdin; with a pty EOF changes nothing, as
// in sshd. Input the child no longer takes is discarded so the client never
// stalls on a full window; the copier ends when the channel closes.
func (p *process) copyInput(ch gossh.Channel) {
	if p.stdin != nil {
		_, _ = io.Copy(p.stdin, ch)
		p.stdin.Close()
	} else {
		_, _ = io.Copy(p.master, ch)
	}
	_, _ = io.Copy(io.Discard, ch)
}

// supervise waits for the leader, then for the output, then reaps and
// reports the exit and closes the channel.
func (p *process) supervise(ctx context.Context, ch gossh.Channel, outDone <-chan struct{}, logger *slog.Logger) {
	exited := make(chan error, 1)
	go func() { exited <- waitExited(p.pid) }() // joined: every path below receives from exited
	done := ctx.Done()
	select {
	case err := <-exited:
		if err != nil {
			logger.Error("localshell: waiting for the process", "pid", p.pid, "err", err)
		}
	case <-done:
		logger.Info("localshell: ending the process group", "pid", p.pid, "cause", context.Cause(ctx))
		p.terminate(exited)
		// done stays set: the drain below ends at once, so output held
		// open by processes that left the group cannot keep a killed
		// session alive.
	}
	// The leader is a zombie until reaped below, so its pid, which is the
	// group's id, cannot be reused meanwhile and group signals stay safe.
	for n := len(p.outputs); n > 0; {
		select {
		case <-outDone:
			n--
		case <-done:
			// Output held open by what is left of the group: end it.
			_ = p.signalGroup(syscall.SIGKILL)
			p.closeFiles()
			done = nil
		}
	}
	p.mu.Lock()
	p.reaped = true
	p.mu.Unlock()
	waitErr := p.cmd.Wait()
	p.closeFiles()

	_ = ch.CloseWrite()
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		logger.Error("localshell: unknown exit state", "pid", p.pid, "err", waitErr)
	case ws.Signaled():
		logger.Debug("localshell: process killed", "pid", p.pid, "signal", ws.Signal())
		_, _ = ch.SendRequest("exit-signal", false, gossh.Marshal(&struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: signalName(ws.Signal()), CoreDumped: ws.CoreDump()}))
	default:
		logger.Debug("localshell: process exited", "pid", p.pid, "status", ws.ExitStatus())
		_, _ = ch.SendRequest("exit-status", false, gossh.Marshal(&struct{ Status uint32 }{uint32(ws.ExitStatus())}))
	}
	_ = ch.Close()
}

// terminate sends SIGHUP to the group, SIGKILL after the grace, and returns
// once the leader has exited.
func (p *process) terminate(exited <-chan error) {
	_ = p.signalGroup(syscall.SIGHUP)
	t := time.NewTimer(p.grace)
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-t.C:
	}
	_ = p.signalGroup(syscall.SIGKILL)
	<-exited
}

// signalGroup delivers sig to the process group while the leader is not
// reaped.
func (p *process) signalGroup(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return errProcessGone
	}
	if err := unix.Kill(-p.pid, sig); err != nil {
		return fmt.Errorf("localshell: signal %v to group %d: %w", sig, p.pid, err)
	}
	return nil
}

// sendBreak does what a BREAK does to a terminal with BRKINT set: SIGINT to
// the terminal's foreground process group. Without a pty there is nothing to
// break.
func (p *process) sendBreak() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped || p.master == nil {
		return errProcessGone
	}
	pgrp, err := foregroundGroup(p.master)
	if err != nil || pgrp <= 0 {
		pgrp = p.pid
	}
	return unix.Kill(-pgrp, syscall.SIGINT)
}

// resize changes the pty's size.
func (p *process) resize(w window) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped || p.master == nil {
		return errProcessGone
	}
	return setWinsize(p.master, w)
}

// closeFiles closes our ends of the pipes or the pty master, which ends
// every copier blocked on them. Idempotent.
func (p *process) closeFiles() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.outputs {
		f.Close()
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
}

// waitExited blocks until pid has exited without reaping it (WNOWAIT).
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// sshSignals are the signals a client may send (RFC 4254 section 6.9).
var sshSignals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP, "KILL": syscall.SIGKILL,
	"QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
}

// signalName is the exit-signal name of sig as sshd reports it: the RFC
// 4254 names without "SIG", else "SIG@openssh.com".
func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGABRT:
		return "ABRT"
	case syscall.SIGALRM:
		return "ALRM"
	case syscall.SIGFPE:
		return "FPE"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGILL:
		return "ILL"
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGPIPE:
		return "PIPE"
	case syscall.SIGQUIT:
		return "QUIT"
	case syscall.SIGSEGV:
		return "SEGV"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGUSR1:
		return "USR1"
	case syscall.SIGUSR2:
		return "USR2"
	}
	return "SIG@openssh.com"
}
