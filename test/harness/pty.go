package harness

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Terminal runs a program on a pseudo-terminal, like a person at a real
// terminal: Type sends keystrokes, Seen reports what the screen shows.
type Terminal struct {
	Cmd  *exec.Cmd
	f    *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// StartTerminal starts name on a 120x40 terminal.
func StartTerminal(t testing.TB, name string, args ...string) *Terminal {
	t.Helper()
	tm := &Terminal{Cmd: exec.Command(name, args...), done: make(chan struct{})}
	tm.Cmd.Env = append(os.Environ(), "TERM=xterm")
	f, err := pty.StartWithSize(tm.Cmd, &pty.Winsize{Cols: 120, Rows: 40})
	if err != nil {
		t.Fatal(err)
	}
	tm.f = f
	go func() {
		defer close(tm.done)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("terminal output: %q", tm.Output())
		}
		tm.Cmd.Process.Kill()
		tm.Cmd.Wait()
		f.Close()
		<-tm.done
	})
	return tm
}

// Output is everything the program wrote so far.
func (tm *Terminal) Output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// Seen returns a condition: the output contains s.
func (tm *Terminal) Seen(s string) func() bool {
	return func() bool { return strings.Contains(tm.Output(), s) }
}

// Type sends keystrokes one at a time, as typed.
func (tm *Terminal) Type(s string) {
	for _, c := range []byte(s) {
		tm.f.Write([]byte{c})
		time.Sleep(5 * time.Millisecond)
	}
}

// Wait waits up to d for the program to exit.
func (tm *Terminal) Wait(t testing.TB, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- tm.Cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal("the program did not exit")
	}
}

// Resize changes the terminal size (the program gets SIGWINCH).
func (tm *Terminal) Resize(cols, rows uint16) error {
	return pty.Setsize(tm.f, &pty.Winsize{Cols: cols, Rows: rows})
}
