package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// asciinemaCat runs the real `asciinema cat FILE` and returns what it
// printed. asciinema opens /dev/tty, so it runs on a pseudo-terminal.
func asciinemaCat(t *testing.T, file string) string {
	t.Helper()
	bin, err := exec.LookPath("asciinema")
	if err != nil {
		t.Skip("asciinema binary not installed (apt package asciinema); skipping the real-player check")
	}
	// The timeout only guards against a hung player; it is not a threshold.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "cat", file)
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "LC_ALL=C.UTF-8")
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatalf("start asciinema: %v", err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	_, err = io.Copy(&out, ptmx) // ends with EIO once asciinema exits
	if err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatalf("read asciinema output: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("asciinema cat %s: %v\n%s", file, err, out.String())
	}
	return out.String()
}

func exportTo(t *testing.T, path string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export.cast")
	f, err := os.Create(out)
	must(t, err)
	must(t, Export(f, path))
	must(t, f.Close())
	return out
}

func TestExportPlaysInAsciinema(t *testing.T) {
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, Options{})
	clock.Advance(time.Second)
	must(t, w.Output([]byte("\x1b[1mbold-marker\x1b[0m \"quoted\" back\\slash\r\n")))
	clock.Advance(time.Second)
	must(t, w.Input([]byte("typed-secret-input")))
	must(t, w.Resize(132, 43))
	must(t, w.Output([]byte("gr\xc3")))
	must(t, w.Output([]byte("\xbc\xc3\x9fe \xe2\x82\xac \xf0\x9f\x98")))
	must(t, w.Output([]byte("\x80 tab\there\r\n")))
	_, err := w.Close()
	must(t, err)

	full := asciinemaCat(t, exportTo(t, path))
	for _, want := range []string{"bold-marker", `"quoted" back\slash`, "grüße € 😀 tab\there"} {
		if !strings.Contains(full, want) {
			t.Errorf("asciinema cat output lacks %q:\n%q", want, full)
		}
	}
	if strings.Contains(full, "typed-secret-input") {
		t.Error("asciinema cat printed an input event")
	}

	// A crash prefix cut inside the last event still plays.
	data, err := os.ReadFile(path)
	must(t, err)
	crashed := filepath.Join(t.TempDir(), "crashed.cast")
	must(t, os.WriteFile(crashed, data[:len(data)-10], 0o600))
	r, err := Open(crashed)
	must(t, err)
	if !r.Truncated {
		t.Error("crash prefix not reported as truncated")
	}
	r.Close()
	prefix := asciinemaCat(t, exportTo(t, crashed))
	if !strings.Contains(prefix, "bold-marker") || strings.Contains(prefix, "tab") {
		t.Errorf("asciinema cat of the crash prefix: %q", prefix)
	}
}

// TestCrashChild is the recording process of TestKillDuringRecording; it
// does nothing unless started by it.
func TestCrashChild(t *testing.T) {
	path := os.Getenv("RECORDER_CRASH_CHILD")
	if path == "" {
		t.Skip("helper process for TestKillDuringRecording")
	}
	w, err := Create(path, Header{Width: 80, Height: 24}, Options{IndexBytes: 512})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// 300 events far below the 64 KiB buffer, then silence: only the
	// background flusher can put them on disk.
	for i := range 300 {
		if err := w.Output(fmt.Appendf(nil, "line-%d ✓\r\n", i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	select {} // until killed
}

// TestKillDuringRecording kills a recording process with SIGKILL while its
// Writer is open; the file left behind must open, seek and play in
// asciinema.
func TestKillDuringRecording(t *testing.T) {
	path := filepath.Join(t.TempDir(), "killed.cast")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RECORDER_CRASH_CHILD="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	pid := cmd.Process.Pid
	exited := false
	t.Cleanup(func() {
		if !exited {
			syscall.Kill(pid, syscall.SIGKILL)
			cmd.Wait()
		}
	})
	// Wait until the background flusher has put enough on disk: nothing
	// in the child calls Sync or Close.
	deadline := time.Now().Add(time.Minute)
	for {
		data, _ := os.ReadFile(path)
		if bytes.Contains(data, []byte("line-299 ")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child never flushed line-299; stderr: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	err := cmd.Wait()
	exited = true
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v; stderr: %s", err, stderr.String())
	}

	_, evs := readAll(t, path)
	if len(evs) != 300 {
		t.Fatalf("%d events survived, want 300", len(evs))
	}
	for i, ev := range evs {
		if want := fmt.Sprintf("line-%d ✓\r\n", i); ev.Data != want {
			t.Fatalf("event %d = %q, want %q", i, ev.Data, want)
		}
	}
	r, err := Open(path)
	must(t, err)
	defer r.Close()
	mid := evs[len(evs)/2]
	must(t, r.SeekTime(mid.Time))
	ev, err := r.Next()
	must(t, err)
	if ev.Time != mid.Time {
		t.Errorf("seek in the killed recording: got %v, want time %v", ev, mid.Time)
	}
	out := asciinemaCat(t, exportTo(t, path))
	if !strings.Contains(out, "line-299 ✓") {
		t.Errorf("asciinema cat of the killed recording lacks line-299:\n%.300q", out)
	}
}
