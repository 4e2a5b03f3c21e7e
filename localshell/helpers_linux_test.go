//go:build linux

package localshell

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// testTimeout bounds every wait in these tests; it is a safety net against
// a hang, never a threshold a passing test comes near.
const testTimeout = 30 * time.Second

func newTestServer(t *testing.T) *Server {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := New(logger)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// selfTarget is a target running as the account of the test process.
func selfTarget(t *testing.T) Target {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return Target{Name: "demo", User: u.Username, Shell: "/bin/bash"}
}

func connect(t *testing.T, s *Server, tg Target) *gossh.Client {
	t.Helper()
	c, err := s.Connect(context.Background(), tg, tg.User)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newSession(t *testing.T, c *gossh.Client) *gossh.Session {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	return sess
}

// syncBuffer collects output and lets a test wait for a condition on it
// without polling on a timer.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until cond holds on the output so far and returns it.
func (b *syncBuffer) waitFor(t *testing.T, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		if s := b.String(); cond(s) {
			return s
		}
		select {
		case <-b.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; output so far: %q", what, b.String())
		}
	}
}

// waitSession waits for sess.Wait with the test timeout.
func waitSession(t *testing.T, sess *gossh.Session) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for the session to end")
		return nil
	}
}

// processExists reports whether pid exists, zombie or not.
func processExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}
