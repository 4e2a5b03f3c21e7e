package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/storage"
)

func noSleep(context.Context, time.Duration) error { return nil }

func TestRetriesThenDelivers(t *testing.T) {
	var calls atomic.Int32
	got := make(chan Message, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(503)
			return
		}
		var m Message
		json.NewDecoder(r.Body).Decode(&m)
		got <- m
	}))
	defer srv.Close()
	n := &Notifier{URLs: []string{srv.URL + "/hook/SECRET"}, Sleep: noSleep}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); n.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	n.Notify(storage.Request{ID: "r-1", Kind: storage.KindAccess, User: "alice", Target: "prod-1", Duration: time.Hour, Reason: "incident"}, "created")
	select {
	case m := <-got:
		if !strings.Contains(m.Text, "alice asks for access to prod-1 for 1h0m0s — incident") || !strings.Contains(m.Text, "jumpgate approve r-1") {
			t.Fatalf("text %q", m.Text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered")
	}
	if calls.Load() != 3 {
		t.Fatalf("%d attempts", calls.Load())
	}
}

func TestNeverBlocksAndNeverLogsTheURL(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	var logs bytes.Buffer
	n := &Notifier{URLs: []string{srv.URL + "/hook/SECRET"}, Sleep: noSleep, MaxAttempts: 1,
		Client: &http.Client{Timeout: 50 * time.Millisecond}, Logger: slog.New(slog.NewTextHandler(&syncBuf{w: &logs}, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); n.Run(ctx) }()
	start := time.Now()
	for i := 0; i < QueueSize*2; i++ {
		n.Notify(storage.Request{ID: "r"}, "created")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Notify blocked")
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	if strings.Contains(logs.String(), "SECRET") {
		t.Fatalf("webhook URL logged: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "queue full") {
		t.Fatal("dropped notifications not logged")
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(404)
	}))
	defer srv.Close()
	n := &Notifier{URLs: []string{srv.URL}, Sleep: noSleep, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	n.init()
	n.deliver(context.Background(), srv.URL, Message{Text: "x"})
	if calls.Load() != 1 {
		t.Fatalf("%d attempts for a 404", calls.Load())
	}
}

type syncBuf struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.w.Write(p) }
