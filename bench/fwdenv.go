package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/test/harness"
)

// fwdServer is a jumpgate server of its own for one forwarder benchmark
// (rows 7 and 8): its targets are the database or the cluster that
// benchmark starts, and its peak memory is not mixed with the SSH rows'.
// It shares the run's CA keys and IdP, so the same OpenSSH client and
// host CA trust reach it.
type fwdServer struct {
	Srv  *harness.Server
	User *harness.User
	// SSHConfig reaches the bastion as "jumpgate" with the user's
	// certificate, the bench cipher and kex.
	SSHConfig string
}

func (e *Env) startFwdServer(policy string, targets []harness.Target) *fwdServer {
	srv := harness.StartServer(e.TB, harness.ServerOptions{
		IdP: e.IdP, Policy: policy, ExtraConfig: e.Keys.CAConfig("3h", "3h"), Targets: targets,
	})
	u := srv.Login(e.TB, e.User.Name)
	h, p, _ := net.SplitHostPort(srv.SSHAddr)
	cfg := fmt.Sprintf("Host %s\n  HostName %s\n  Port %s\n  User %s\n\n", jgJump, h, p, u.Name) + sshCommon(u.SSHDir)
	file := filepath.Join(e.TB.TempDir(), "ssh_config")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		e.TB.Fatalf("bench: %v", err)
	}
	return &fwdServer{Srv: srv, User: u, SSHConfig: file}
}

// PID of the server process.
func (s *fwdServer) PID() int { return s.Srv.Proc.Cmd.Process.Pid }

// tunnel is a running `ssh -N -L` (the user's path to a forwarded service).
type tunnel struct {
	// Addr is the local end, 127.0.0.1:port.
	Addr string
	proc *harness.Process
}

// openTunnel runs `ssh -F cfg -N -o ExitOnForwardFailure=yes -L
// PORT:remote dest` and waits until the local port accepts connections.
func (e *Env) openTunnel(ctx context.Context, cfg, dest, remote string) (*tunnel, error) {
	addr := harness.FreePort(e.TB)
	_, port, _ := net.SplitHostPort(addr)
	p := harness.Start(e.TB, nil, "ssh", "-F", cfg, "-N", "-o", "ExitOnForwardFailure=yes", "-L", port+":"+remote, dest)
	t := &tunnel{Addr: addr, proc: p}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return t, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("bench: ssh -L %s %s exited: %v: %s", remote, dest, p.Err(), p.Out.String())
		case <-ctx.Done():
			t.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Close()
			return nil, fmt.Errorf("bench: ssh -L %s %s: local port not open after 30s: %s", remote, dest, p.Out.String())
		}
	}
}

// Port is the local port of the tunnel.
func (t *tunnel) Port() string {
	_, p, _ := net.SplitHostPort(t.Addr)
	return p
}

// Close stops the ssh process (by its PID) and waits for it.
func (t *tunnel) Close() { _ = t.proc.Stop(5 * time.Second) }

// resetPeakRSS resets VmHWM of pid to its current RSS (clear_refs 5), so
// the next peakRSS reports the peak since now.
func resetPeakRSS(pid int) error {
	f := filepath.Join("/proc", strconv.Itoa(pid), "clear_refs")
	if err := os.WriteFile(f, []byte("5"), 0); err != nil {
		return fmt.Errorf("bench: reset peak RSS: %w", err)
	}
	return nil
}

// peakRSSMB is VmHWM of pid in MB (10⁶ B).
func peakRSSMB(pid int) (float64, error) {
	kb, err := memKB(pid, "status", "VmHWM")
	if err != nil {
		return 0, fmt.Errorf("bench: peak RSS: %w", err)
	}
	return float64(kb) * 1024 / 1e6, nil
}

// sampleAnonPeak polls RssAnon of pid every 5 ms until the returned func
// is called, which returns the peak in MB (10⁶ B).
func sampleAnonPeak(pid int) func() float64 {
	stop := make(chan struct{})
	var peakKB int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if kb, err := memKB(pid, "status", "RssAnon"); err == nil && kb > peakKB {
				peakKB = kb
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		close(stop)
		wg.Wait()
		return float64(peakKB) * 1024 / 1e6
	}
}
