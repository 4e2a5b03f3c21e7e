package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// perfServer samples the jumpgate server process with `perf record -g`
// into ProfileDir/name.perf.data until the returned func is called. Read
// the profile with `perf report -i FILE --no-children`. Without perf it
// logs and does nothing.
func (e *Env) perfServer(name string) func() {
	return e.perfPID(name, e.Server.Proc.Cmd.Process.Pid)
}

// perfPID is perfServer for any process (the forwarder benchmarks' own
// servers).
func (e *Env) perfPID(name string, pid int) func() {
	if err := os.MkdirAll(e.Flags.ProfileDir, 0o755); err != nil {
		e.Log.Warn("profile dir", "err", err)
		return func() {}
	}
	file := filepath.Join(e.Flags.ProfileDir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.Log.Warn("perf not available", "err", err)
		return func() {}
	}
	time.Sleep(300 * time.Millisecond) // perf attaches asynchronously; nothing to wait on
	return func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		e.Log.Info("server profile written", "file", file)
	}
}
