package kube

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/forwarders"
)

// gatedAudit holds every kube.request event until release is closed, or
// fails it when fail is set.
type gatedAudit struct {
	fakeAudit
	release chan struct{}
	fail    error
	// servedFirst is set when an event was committed after Serve returned.
	mu          sync.Mutex
	serveDone   <-chan error
	servedFirst bool
}

func (a *gatedAudit) Emit(ctx context.Context, e audit.Event) (audit.Event, error) {
	if e.Type != audit.KubeRequest {
		return a.fakeAudit.Emit(ctx, e)
	}
	if a.fail != nil {
		return e, a.fail
	}
	<-a.release
	a.mu.Lock()
	select {
	case <-a.serveDone:
		a.servedFirst = true
	default:
	}
	a.mu.Unlock()
	return a.fakeAudit.Emit(ctx, e)
}

// serveOne serves exactly one connection of ln with e's forwarder and
// reports Serve's result.
func serveOne(t *testing.T, e *env, ln net.Listener) <-chan error {
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			done <- err
			return
		}
		done <- e.f.Serve(context.Background(), c.(*net.TCPConn), alice, e.target)
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return done
}

func podsUpstream(t *testing.T) (string, []byte) {
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(podList)
	})
	return up.Listener.Addr().String(), upCA
}

// TestAuditOffCriticalPath: a request's response does not wait for its
// kube.request event, and the event is committed before Serve returns.
func TestAuditOffCriticalPath(t *testing.T) {
	addr, upCA := podsUpstream(t)
	ga := &gatedAudit{release: make(chan struct{})}
	e := startForwarderCfg(t, addr, upCA, "upstream-token", testPolicy, alice, func(c *Config) { c.Audit = ga })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := serveOne(t, e, ln)
	ga.mu.Lock()
	ga.serveDone = done
	ga.mu.Unlock()
	c := e.newClient(t, true)
	// The audit log holds the event: the response still arrives.
	resp, err := c.Get("https://" + ln.Addr().String() + "/api/v1/namespaces/default/pods")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := len(ga.ofType(audit.KubeRequest)); n != 0 {
		t.Fatalf("%d events committed while the audit log holds them", n)
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	// Give a Serve that did not wait for its queue the time to return.
	time.Sleep(100 * time.Millisecond)
	close(ga.release)
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ga.mu.Lock()
	defer ga.mu.Unlock()
	if ga.servedFirst {
		t.Fatal("Serve returned before the connection's events were committed")
	}
	ev := ga.ofType(audit.KubeRequest)
	if len(ev) != 1 || ev[0].Details["status"] != http.StatusOK || ev[0].Time.IsZero() {
		t.Fatalf("events %+v", ev)
	}
}

// TestAuditFailureFailsClosed: when a kube.request event cannot be
// written, the connection is closed and nothing more is served on it.
func TestAuditFailureFailsClosed(t *testing.T) {
	addr, upCA := podsUpstream(t)
	ga := &gatedAudit{fail: errors.New("disk full")}
	e := startForwarderCfg(t, addr, upCA, "upstream-token", testPolicy, alice, func(c *Config) { c.Audit = ga })
	for _, h2 := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := serveOne(t, e, ln)
		c := e.newClient(t, h2)
		url := "https://" + ln.Addr().String() + "/api/v1/namespaces/default/pods"
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("h2=%v: first request: status %d", h2, resp.StatusCode)
		}
		// The failed write closes the connection: Serve ends with the cause.
		if err := <-done; !errors.Is(err, ErrAuditFailed) {
			t.Fatalf("h2=%v: Serve: %v, want ErrAuditFailed", h2, err)
		}
		// Later requests get a 503 or find the connection closed; never 200.
		for i := 0; i < 3; i++ {
			resp, err := c.Get(url)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("h2=%v: request after the audit failure: status %d", h2, resp.StatusCode)
			}
		}
	}
}

// TestAuditQueueFailedRefuses: a request on a connection whose audit
// write failed gets a Kubernetes Status 503 and is not forwarded.
func TestAuditQueueFailedRefuses(t *testing.T) {
	var reached int
	var mu sync.Mutex
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached++
		mu.Unlock()
	})
	e := startForwarderCfg(t, up.Listener.Addr().String(), upCA, "upstream-token", testPolicy, alice, nil)
	bad := &gatedAudit{fail: errors.New("disk full")}
	shared := audit.NewQueue(forwarders.BatchEmitter(bad), 0)
	defer shared.Close()
	aq := newAuditQueue(context.Background(), shared, bad, e.f.log, func(error) {})
	aq.enqueue(audit.Event{Type: audit.KubeRequest})
	aq.close()
	if !errors.Is(aq.Err(), ErrAuditFailed) {
		t.Fatalf("queue error %v", aq.Err())
	}
	var wg sync.WaitGroup
	h := &handler{f: e.f, log: e.f.log, s: alice, t: e.target, wg: &wg, audit: aq}
	rec := &respRecorder{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/api/v1/namespaces/default/pods", nil)
	h.ServeHTTP(rec, req)
	if rec.code != http.StatusServiceUnavailable || rec.header.Get("Connection") != "close" {
		t.Fatalf("status %d, headers %v", rec.code, rec.header)
	}
	mu.Lock()
	defer mu.Unlock()
	if reached != 0 {
		t.Fatal("the request reached the API server")
	}
}

// respRecorder is a minimal http.ResponseWriter.
type respRecorder struct {
	header http.Header
	code   int
	body   []byte
}

func (r *respRecorder) Header() http.Header { return r.header }
func (r *respRecorder) WriteHeader(c int) {
	if r.code == 0 {
		r.code = c
	}
}

func (r *respRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	r.body = append(r.body, b...)
	return len(b), nil
}
