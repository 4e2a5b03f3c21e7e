package recorder

import (
	"errors"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the Writer.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testHeader() Header {
	return Header{Width: 80, Height: 24, Title: "test", Env: map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/bash"}}
}

// newTestWriter creates a recording in a fresh directory.
func newTestWriter(t *testing.T, clock *fakeClock, opts Options) (*Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec", "session.cast")
	opts.Clock = clock.Now
	w, err := Create(path, testHeader(), opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

// readAll opens path and returns all its events.
func readAll(t *testing.T, path string) (*Reader, []Event) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	var evs []Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r, evs
		}
		if err != nil {
			t.Fatalf("Next after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
