package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/storage"
)

// recv waits for the next id the listener delivers; the deadline only
// turns a hang into a failure.
func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(30 * time.Second):
		t.Fatal("no notification")
		return ""
	}
}

func TestListenRequestsAcrossReplicas(t *testing.T) {
	srv, dsn, stores := replicas(t, 2)
	a, b := stores[0], stores[1]
	ctx, cancel := context.WithCancelCause(ctxT(t))
	ids := make(chan string, 64)
	var wg sync.WaitGroup
	var listenErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		listenErr = a.ListenRequests(ctx, func(id string) { ids <- id })
	}()
	stopped := errors.New("test over")
	t.Cleanup(func() { cancel(stopped); wg.Wait() })

	if id := recv(t, ids); id != "" {
		t.Fatalf("first call = %q, want the resync call", id)
	}
	if err := b.CreateRequest(ctx, storage.Request{ID: "req-1", Status: storage.StatusPending}); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, ids); id != "req-1" {
		t.Fatalf("after create got %q", id)
	}
	if _, err := b.UpdateRequest(ctx, "req-1", func(r *storage.Request) error { r.Status = storage.StatusApproved; return nil }); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, ids); id != "req-1" {
		t.Fatalf("after approval got %q", id)
	}
	// A refused update and a rolled-back create send nothing: the next
	// notification is the one that follows them.
	_, _ = b.UpdateRequest(ctx, "req-1", func(*storage.Request) error { return errors.New("no") })
	_ = b.CreateRequest(ctx, storage.Request{ID: "req-1"})
	if err := b.CreateRequest(ctx, storage.Request{ID: "req-2"}); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, ids); id != "req-2" {
		t.Fatalf("got %q, want req-2 (a failed write notified)", id)
	}

	// Kill the listener's connection: it reconnects, resyncs and goes on.
	name := dbName(t, dsn)
	out, err := srv.SuperSQL("postgres", fmt.Sprintf("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '%s' AND datname = '%s'", listenerApp+"-"+requestsChannel, name))
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("terminate listener: %q %v", out, err)
	}
	if id := recv(t, ids); id != "" {
		t.Fatalf("after reconnect got %q, want the resync call", id)
	}
	if err := b.CreateRequest(ctx, storage.Request{ID: "req-3"}); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, ids); id != "req-3" {
		t.Fatalf("after reconnect got %q", id)
	}

	cancel(stopped)
	wg.Wait()
	if !errors.Is(listenErr, stopped) {
		t.Fatalf("ListenRequests returned %v, want the cancel cause", listenErr)
	}
}

// TestTerminationsAcrossReplicas: a termination asked on one replica
// reaches the other's ListenTerminations with the session and who asked;
// payloads that are not terminations are ignored.
func TestTerminationsAcrossReplicas(t *testing.T) {
	_, _, stores := replicas(t, 2)
	a, b := stores[0], stores[1]
	ctx, cancel := context.WithCancel(ctxT(t))
	got := make(chan string, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = a.ListenTerminations(ctx, func(session, by string) { got <- session + " by " + by })
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	// Notifications sent before LISTEN is established are not delivered,
	// so ask until the listener answers.
	for i := 0; ; i++ {
		if _, err := b.pool.Exec(ctx, "SELECT pg_notify($1, 'not json')", terminateChannel); err != nil {
			t.Fatal(err)
		}
		if err := b.RequestTermination(ctx, "s-123", "dave@example.com"); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != "s-123 by dave@example.com" {
				t.Fatalf("got %q", s)
			}
			return
		case <-time.After(500 * time.Millisecond):
			if i == 60 {
				t.Fatal("no termination delivered")
			}
		}
	}
}
