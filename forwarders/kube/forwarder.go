package kube

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
)

// Auditor and Approver are the shared forwarder interfaces.
type (
	Auditor  = forwarders.Auditor
	Approver = forwarders.Approver
)

// Config configures the forwarder. Policy, Audit and CA are required.
type Config struct {
	Policy *policy.Store
	Audit  Auditor
	// CA issues the serving certificates (LoadOrCreateCA).
	CA *CA
	// Approvals holds requests under kubernetes.review; without it they
	// are refused.
	Approvals Approver
	// HoldTimeout is how long a held request waits (default 5m).
	HoldTimeout time.Duration
	Logger      *slog.Logger
	Clock       func() time.Time
	// Dial reaches API servers (default net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ReadSecret reads the target's token file (default os.ReadFile, trimmed).
	ReadSecret func(file string) (string, error)
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers (default 30s); IdleTimeout how long a kept-alive connection
	// waits for its next request (default 10m).
	ReadHeaderTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers (default 256 KiB);
	// MaxBodyBytes request bodies (default 32 MiB); MaxMaskBytes the
	// size of a response that is masked whole (default 256 MiB).
	MaxHeaderBytes int
	MaxBodyBytes   int64
	MaxMaskBytes   int64

	// RecordingsDir receives the recordings of pod execs, as
	// YYYY-MM-DD/<session-id>.cast; empty records nothing.
	RecordingsDir string
	// Recordings stores exec recordings; nil means files under
	// RecordingsDir.
	Recordings recordings.Store
	// Replica names this server in the session index.
	Replica string
	// Sessions, when set, indexes each exec session (at start and end).
	Sessions interface {
		PutSession(ctx context.Context, s storage.Session) error
	}
	// AuditKey signs each recording's SHA-256 (recorder.Sign) in the
	// session.end event; without it recordings are not signed.
	AuditKey ed25519.PrivateKey
	// FailClosed refuses an exec (503) that cannot be recorded: no
	// RecordingsDir, the file cannot be created, or SPDY framing.
	FailClosed bool
	// NewID names exec sessions (default "k-" and 16 random hex digits).
	NewID func() string
}

// Forwarder serves Kubernetes API channels. It is safe for concurrent use.
type Forwarder struct {
	cfg   Config
	log   *slog.Logger
	audit forwarders.AuditQueue // kube.request events of every connection, in group commits

	mu         sync.Mutex
	transports map[string]*http.Transport // by target name+address+CA
}

var _ forwarders.Forwarder = (*Forwarder)(nil)

// New returns a forwarder.
func New(cfg Config) *Forwarder {
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.ReadSecret == nil {
		cfg.ReadSecret = func(file string) (string, error) {
			b, err := os.ReadFile(file)
			return strings.TrimSpace(string(b)), err
		}
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 256 << 10
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 32 << 20
	}
	if cfg.NewID == nil {
		cfg.NewID = newSessionID
	}
	if cfg.MaxMaskBytes <= 0 {
		cfg.MaxMaskBytes = 256 << 20
	}
	return &Forwarder{cfg: cfg, log: cfg.Logger.With("forwarder", "kube"), transports: map[string]*http.Transport{},
		audit: forwarders.AuditQueue{Audit: cfg.Audit}}
}

// Close writes the queued audit events and releases idle upstream
// connections. Connections still open write their later events themselves.
func (f *Forwarder) Close() {
	f.audit.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tr := range f.transports {
		tr.CloseIdleConnections()
	}
}

// Errors Serve returns.
var (
	ErrNoCA       = errors.New("kube: no CA configured")
	ErrBadAddress = errors.New("kube: bad target address")
)

// Serve implements forwarders.Forwarder: it serves HTTPS on conn until the
// client closes it or ctx is cancelled.
func (f *Forwarder) Serve(ctx context.Context, conn forwarders.Stream, s forwarders.Session, t config.Target) error {
	log := f.log.With("session", s.ID, "user", s.User, "target", t.Name)
	defer conn.Close()
	if f.cfg.CA == nil {
		return ErrNoCA
	}
	upstream, err := upstreamURL(t.Address)
	if err != nil {
		return err
	}
	cert, err := f.cfg.CA.ServingCert(t.Name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	nc, join := asNetConn(ctx, conn)
	defer join()
	ln := newOneConnListener(nc)
	var handlers sync.WaitGroup
	auditFailed := make(chan struct{})
	var failOnce sync.Once
	aq := newAuditQueue(ctx, f.audit.Get(), f.cfg.Audit, log, func(error) { failOnce.Do(func() { close(auditFailed) }) })
	h := &handler{f: f, log: log, s: s, t: t, upstream: upstream, wg: &handlers, audit: aq}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      f.transport(t),
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.proxyError,
		BufferPool:     copyBuffers,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: f.cfg.ReadHeaderTimeout,
		IdleTimeout:       f.cfg.IdleTimeout,
		MaxHeaderBytes:    2 * f.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{*cert},
			NextProtos:   []string{"h2", "http/1.1"},
			MinVersion:   tls.VersionTLS12,
		},
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	select {
	case <-ln.done:
	case <-ctx.Done():
	case <-auditFailed:
		// Fail closed: requests in flight finish (new ones get 503), then
		// the connection is closed.
		sctx, cancel := context.WithTimeout(ctx, shutdownGrace)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	_ = srv.Close()
	<-served
	handlers.Wait()
	// Every event of a request that was served is committed before the
	// channel is released.
	aq.close()
	log.Debug("kube channel ended")
	return aq.Err()
}

// shutdownGrace is how long requests in flight may finish once a
// connection fails closed.
const shutdownGrace = 2 * time.Second

// copyBuffers are the ReverseProxy's 32 KiB response copy buffers, shared
// by every connection (without a pool each request allocates its own).
var copyBuffers httputil.BufferPool = &bufferPool{p: sync.Pool{New: func() any { return new([32 << 10]byte) }}}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte { return b.p.Get().(*[32 << 10]byte)[:] }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		b.p.Put((*[32 << 10]byte)(buf[:32<<10]))
	}
}

func upstreamURL(addr string) (*url.URL, error) {
	if addr == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadAddress)
	}
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%w: %q", ErrBadAddress, addr)
	}
	return u, nil
}

// transport returns the cached upstream transport for t. Upgrades (exec,
// attach, port-forward) do not use it: serveUpgrade dials HTTP/1.1 itself.
func (f *Forwarder) transport(t config.Target) http.RoundTripper {
	key := t.Name + "\x00" + t.Address + "\x00" + t.CAFile
	f.mu.Lock()
	defer f.mu.Unlock()
	if tr, ok := f.transports[key]; ok {
		return tr
	}
	tr := &http.Transport{
		DialContext:           f.cfg.Dial,
		TLSClientConfig:       f.tlsConfig(t),
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 0, // watches and held requests are long
	}
	f.transports[key] = tr
	return tr
}

// tlsConfig returns a fresh client TLS configuration trusting t's CA.
func (f *Forwarder) tlsConfig(t config.Target) *tls.Config {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool := x509.NewCertPool()
		if b, err := os.ReadFile(t.CAFile); err == nil && pool.AppendCertsFromPEM(b) {
			tlsCfg.RootCAs = pool
		} else {
			// An unreadable CA must not fall back to the system roots:
			// an empty pool makes every handshake fail (502).
			f.log.Error("cannot read target CA", "target", t.Name, "file", t.CAFile, "err", err)
		}
	}
	return tlsCfg
}
