package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
)

const testPolicy = `
roles:
  - name: eng
    groups: [engineering]
    targets: {names: [prod-k8s]}
    kubernetes:
      review: [{verbs: [delete], resources: [configmaps]}]
kubernetes:
  block: [{verbs: [delete, deletecollection], resources: [namespaces]}, {verbs: [create], resources: [pods/attach]}]
  mask: [{resources: [secrets], fields: [data, stringData]}]
`

type fakeAudit struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *fakeAudit) Emit(_ context.Context, e audit.Event) (audit.Event, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
	return e, nil
}

func (a *fakeAudit) ofType(typ string) []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Event
	for _, e := range a.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls until cond holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeApprover approves or denies every held request after it is created.
type fakeApprover struct {
	mu       sync.Mutex
	created  []storage.Request
	decision chan string // status to answer Wait with
}

func (a *fakeApprover) Create(_ context.Context, r storage.Request, _ time.Duration) (storage.Request, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r.ID = "req-1"
	r.Status = storage.StatusPending
	a.created = append(a.created, r)
	return r, nil
}

func (a *fakeApprover) Wait(ctx context.Context, id string) (storage.Request, error) {
	select {
	case st := <-a.decision:
		return storage.Request{ID: id, Status: st}, nil
	case <-ctx.Done():
		return storage.Request{}, ctx.Err()
	}
}

type env struct {
	f      *Forwarder
	audit  *fakeAudit
	appr   *fakeApprover
	addr   string
	client *http.Client
	caPEM  []byte
	target config.Target
	// cancel ends every Serve of the forwarder (the bastion shutting down).
	cancel context.CancelFunc
}

// tcpStream adapts *net.TCPConn (already a forwarders.Stream).
var _ forwarders.Stream = (*net.TCPConn)(nil)

// startForwarder serves target (pointing at upstream) on a loopback
// listener, one Serve per connection, as the bastion does per channel.
func startForwarder(t *testing.T, upstreamAddr string, upstreamCA []byte, policyText string, sess forwarders.Session) *env {
	t.Helper()
	return startForwarderToken(t, upstreamAddr, upstreamCA, "upstream-token", policyText, sess)
}

func startForwarderToken(t *testing.T, upstreamAddr string, upstreamCA []byte, token, policyText string, sess forwarders.Session) *env {
	t.Helper()
	return startForwarderCfg(t, upstreamAddr, upstreamCA, token, policyText, sess, nil)
}

// startForwarderCfg is startForwarderToken with edit applied to the
// forwarder's Config.
func startForwarderCfg(t *testing.T, upstreamAddr string, upstreamCA []byte, token, policyText string, sess forwarders.Session, edit func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(context.Background(), dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte(policyText))
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "upstream-ca.crt")
	if err := os.WriteFile(caFile, upstreamCA, 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{audit: &fakeAudit{}, appr: &fakeApprover{decision: make(chan string, 1)}, caPEM: ca.PEM()}
	cfg := Config{Policy: policy.Static(p), Audit: e.audit, CA: ca, Approvals: e.appr, HoldTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(&cfg)
	}
	e.f = New(cfg)
	e.target = config.Target{Name: "prod-k8s", Kind: "kubernetes", Address: upstreamAddr, CAFile: caFile,
		Credentials: config.Credentials{TokenFile: tokenFile}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.f.Serve(ctx, c.(*net.TCPConn), sess, e.target); err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("Serve: %v", err)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
		e.f.Close()
	})
	e.client = e.newClient(t, true)
	return e
}

func (e *env) newClient(t *testing.T, h2 bool) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.caPEM) {
		t.Fatal("bad CA PEM")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, ForceAttemptHTTP2: h2,
		DisableCompression: true}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func (e *env) url(path string) string { return "https://" + e.addr + path }

// upstream is a fake API server.
func newUpstream(t *testing.T, h http.HandlerFunc) (*httptest.Server, []byte) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

var alice = forwarders.Session{ID: "s1", User: "alice", Groups: []string{"engineering", "oncall"}, Source: "127.0.0.1:5555"}
