package bastion

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/ca"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
)

// CertStore finds the record of an issued certificate (groups, roles).
type CertStore interface {
	Cert(ctx context.Context, serial uint64) (storage.CertRecord, error)
}

// SessionIndex keeps the session index.
type SessionIndex interface {
	PutSession(ctx context.Context, s storage.Session) error
}

// Metrics receives bastion counters; nil-safe.
type Metrics interface {
	SessionStarted(kind string)
	SessionEnded(kind string)
	BytesForwarded(kind string, n int64)
	AuthFailed(reason string)
	Blocked(kind string)
	Held(kind string)
	RecordingWrite(d time.Duration)
}

// Config wires the bastion to the rest of jumpgate.
type Config struct {
	// HostSigner presents the bastion's host certificate.
	HostSigner  gossh.Signer
	Authority   *ca.Authority
	Revocations *ca.Revocations
	Certs       CertStore
	Policy      *policy.Store
	Audit       *audit.Log
	Sessions    SessionIndex
	Approvals   *approvals.Queue
	// Targets returns the current inventory.
	Targets func() []config.Target
	// RecordingsDir holds recordings; FailClosed refuses recorded sessions
	// when they cannot be recorded.
	RecordingsDir string
	FailClosed    bool
	// Recordings stores recordings; nil means files under RecordingsDir.
	Recordings recordings.Store
	// AuditKey signs recordings.
	AuditKey ed25519.PrivateKey
	// MaxStartups bounds connections that have not authenticated yet.
	MaxStartups int
	// PerSourceMaxStartups bounds the unauthenticated connections from one
	// source address (sshd's PerSourceMaxStartups), so one address cannot
	// take every MaxStartups slot (default 20; never above MaxStartups).
	PerSourceMaxStartups int
	// LoginGraceTime bounds the handshake and authentication (default 30s).
	LoginGraceTime time.Duration
	// MaxChannels bounds the channels open at once on one connection
	// (default 100); more are refused with ResourceShortage.
	MaxChannels int
	// HoldTimeout is how long a held command waits (default 5m).
	HoldTimeout time.Duration
	// UpstreamCertTTL is the life of certificates minted for targets (default 2m).
	UpstreamCertTTL time.Duration
	// Forwarders serve channels to postgres and kubernetes targets.
	Forwarders map[string]forwarders.Forwarder
	Metrics    Metrics
	Logger     *slog.Logger
	Clock      func() time.Time
	Replica    string
	// Dial reaches targets; default net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// LocalShell serves local targets; nil refuses them.
	LocalShell LocalShell
	// Grants returns a user's open just-in-time access windows.
	Grants func(ctx context.Context, user string) ([]policy.Grant, error)
}

// LocalShell opens an in-process SSH connection that runs shells on the
// bastion host for a local target.
type LocalShell interface {
	Connect(ctx context.Context, t config.Target, login string) (*gossh.Client, error)
}

// Server is the SSH bastion.
type Server struct {
	cfg  Config
	log  *slog.Logger
	srv  *gliderssh.Server
	lim  *failLimiter
	keys *hostKeys

	unauth   startups
	draining atomic.Bool

	mu    sync.Mutex
	conns map[*connState]struct{}
	live  map[string]liveSession // running sessions by id
	wg    sync.WaitGroup         // connection and session goroutines
}

// ErrNoSuchSession is returned by Terminate for a session not running here.
var ErrNoSuchSession = errors.New("bastion: no such running session")

type liveSession struct {
	user, target string
	cancel       context.CancelCauseFunc
	warn         func(msg string)
}

func (s *Server) liveCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// warnAll shows msg to every running session.
func (s *Server) warnAll(msg string) {
	s.mu.Lock()
	var warns []func(string)
	for _, ls := range s.live {
		if ls.warn != nil {
			warns = append(warns, ls.warn)
		}
	}
	s.mu.Unlock()
	for _, w := range warns {
		w(msg)
	}
}

// Terminate ends a running session on this bastion; the user sees reason.
func (s *Server) Terminate(id string, reason error) error {
	s.mu.Lock()
	ls, ok := s.live[id]
	s.mu.Unlock()
	if !ok {
		return ErrNoSuchSession
	}
	ls.cancel(reason)
	return nil
}

// IsLive reports whether session id runs on this server.
func (s *Server) IsLive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.live[id]
	return ok
}

// TerminateWhere ends every running session of user to target and returns
// their ids.
func (s *Server) TerminateWhere(user, target string, reason error) []string {
	s.mu.Lock()
	var ended []string
	for id, ls := range s.live {
		if ls.user == user && ls.target == target {
			ls.cancel(reason)
			ended = append(ended, id)
		}
	}
	s.mu.Unlock()
	return ended
}

func (s *Server) register(id, user, target string, cancel context.CancelCauseFunc, warn func(string)) func() {
	s.mu.Lock()
	s.live[id] = liveSession{user: user, target: target, cancel: cancel, warn: warn}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.live, id)
		s.mu.Unlock()
	}
}

// User is an authenticated bastion user.
type User struct {
	Name   string
	Groups []string
	Roles  []string
	Grants []policy.Grant
	Cert   *gossh.Certificate
	Source string
}

// Identity converts u for policy evaluation.
func (u *User) Identity() policy.Identity {
	return policy.Identity{User: u.Name, Groups: u.Groups, Roles: u.Roles, Grants: u.Grants}
}

// withGrants returns u with its just-in-time grants as of now.
func (s *Server) withGrants(ctx context.Context, u *User) *User {
	if s.cfg.Grants == nil {
		return u
	}
	g, err := s.cfg.Grants(ctx, u.Name)
	if err != nil {
		s.log.Error("cannot read access grants; none applied", "user", u.Name, "err", err)
		g = nil
	}
	c := *u
	c.Grants = g
	return &c
}

// New builds a bastion from cfg.
func New(cfg Config) (*Server, error) {
	if cfg.HostSigner == nil || cfg.Authority == nil || cfg.Policy == nil || cfg.Audit == nil {
		return nil, errors.New("bastion: HostSigner, Authority, Policy and Audit are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxStartups <= 0 {
		cfg.MaxStartups = 100
	}
	if cfg.PerSourceMaxStartups <= 0 {
		cfg.PerSourceMaxStartups = 20
	}
	cfg.PerSourceMaxStartups = min(cfg.PerSourceMaxStartups, cfg.MaxStartups)
	if cfg.MaxChannels <= 0 {
		cfg.MaxChannels = 100
	}
	if cfg.LoginGraceTime <= 0 {
		cfg.LoginGraceTime = 30 * time.Second
	}
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = 5 * time.Minute
	}
	if cfg.UpstreamCertTTL <= 0 {
		cfg.UpstreamCertTTL = 2 * time.Minute
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		cfg.Dial = d.DialContext
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "bastion"), conns: map[*connState]struct{}{}, live: map[string]liveSession{},
		lim: newFailLimiter(cfg.Clock), keys: newHostKeys(cfg.Authority)}
	s.srv = &gliderssh.Server{
		HostSigners:          []gliderssh.Signer{cfg.HostSigner},
		Version:              "jumpgate",
		PublicKeyHandler:     s.publicKeyHandler,
		ConnCallback:         s.connCallback,
		ServerConfigCallback: s.serverConfig,
		ChannelHandlers: map[string]gliderssh.ChannelHandler{
			"session":      s.limitChannels(s.handleBastionSession),
			"direct-tcpip": s.limitChannels(s.handleDirectTCPIP),
		},
		RequestHandlers: map[string]gliderssh.RequestHandler{
			"tcpip-forward":        s.refuseGlobal,
			"cancel-tcpip-forward": s.refuseGlobal,
		},
		ConnectionFailedCallback: func(c net.Conn, err error) {
			s.log.Debug("ssh handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		},
	}
	return s, nil
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(l)
	if errors.Is(err, gliderssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, tells running sessions why, and waits for them
// until ctx ends; then it closes what is left.
//
// Running sessions are told first and get until shortly before ctx's
// deadline to finish; then they are ended with reason (their recordings
// are closed and signed as usual).
func (s *Server) Shutdown(ctx context.Context, reason error) error {
	s.draining.Store(true)
	if deadline, ok := ctx.Deadline(); ok {
		grace := time.Until(deadline) - 2*time.Second
		if grace > 0 && s.liveCount() > 0 {
			s.warnAll(fmt.Sprintf("the server is shutting down; this session will be closed in %s", grace.Round(time.Second)))
			t := time.NewTicker(100 * time.Millisecond)
			for end := time.Now().Add(grace); time.Now().Before(end) && s.liveCount() > 0; {
				<-t.C
			}
			t.Stop()
		}
	}
	s.mu.Lock()
	for c := range s.conns {
		c.cancel(reason)
	}
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.srv.Close()
		<-done
	}
	return err
}

// connState is what the bastion knows about one TCP connection.
type connState struct {
	id     string
	remote string
	ip     string
	conn   net.Conn
	ctx    context.Context
	cancel context.CancelCauseFunc

	channels        atomic.Int64 // open channels
	chanLimitLogged atomic.Bool  // the refusal is logged once per connection

	mu       sync.Mutex
	authed   bool
	users    map[string]*User // by key fingerprint
	user     *User
	failures []string
}

func (s *Server) track(c *connState, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

type ctxKey struct{ name string }

var connKey = &ctxKey{"conn"}

// trackedConn reports its close to the bastion and holds the login grace
// deadline until the connection authenticates: gliderlabs/ssh resets the
// deadline on every read and write (to none, without its own timeouts),
// which would otherwise let an unauthenticated connection stay forever.
type trackedConn struct {
	net.Conn
	once    sync.Once
	onClose func()

	mu    sync.Mutex
	grace time.Time // zero once authenticated
}

func (t *trackedConn) capped(d time.Time) time.Time {
	t.mu.Lock()
	g := t.grace
	t.mu.Unlock()
	if !g.IsZero() && (d.IsZero() || d.After(g)) {
		return g
	}
	return d
}

func (t *trackedConn) SetDeadline(d time.Time) error { return t.Conn.SetDeadline(t.capped(d)) }

func (t *trackedConn) SetReadDeadline(d time.Time) error {
	return t.Conn.SetReadDeadline(t.capped(d))
}

func (t *trackedConn) SetWriteDeadline(d time.Time) error {
	return t.Conn.SetWriteDeadline(t.capped(d))
}

// endGrace lifts the login grace deadline (the user authenticated).
func (t *trackedConn) endGrace() {
	t.mu.Lock()
	t.grace = time.Time{}
	t.mu.Unlock()
	_ = t.Conn.SetDeadline(time.Time{})
}

func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(t.onClose)
	return err
}

func (t *trackedConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (s *Server) connCallback(ctx gliderssh.Context, conn net.Conn) net.Conn {
	remote := conn.RemoteAddr().String()
	ip, _, _ := net.SplitHostPort(remote)
	if s.draining.Load() {
		return nil
	}
	if !s.lim.allowed(ip) {
		s.log.Warn("connection refused: too many authentication failures", "remote", remote)
		return nil
	}
	switch s.unauth.begin(ip, s.cfg.MaxStartups, s.cfg.PerSourceMaxStartups) {
	case errTooManyStartups:
		s.log.Warn("connection refused: too many unauthenticated connections", "remote", remote, "max_startups", s.cfg.MaxStartups)
		return nil
	case errTooManyFromSource:
		s.log.Warn("connection refused: too many unauthenticated connections from one address", "remote", remote, "per_source_max_startups", s.cfg.PerSourceMaxStartups)
		return nil
	}
	cctx, cancel := context.WithCancelCause(context.Background())
	st := &connState{id: newID("c"), remote: remote, ip: ip, ctx: cctx, cancel: cancel, users: map[string]*User{}}
	s.wg.Add(1)
	s.track(st, true)
	grace := time.Now().Add(s.cfg.LoginGraceTime) // a socket deadline: real time
	_ = conn.SetDeadline(grace)
	tc := &trackedConn{Conn: conn, grace: grace}
	tc.onClose = func() {
		st.mu.Lock()
		authed, failures, user := st.authed, st.failures, st.user
		st.mu.Unlock()
		if !authed {
			s.unauth.end(ip)
			if len(failures) > 0 {
				s.auditAuthFailure(st, failures)
			}
		}
		_ = user
		cancel(errConnClosed)
		s.track(st, false)
		s.wg.Done()
	}
	st.conn = tc
	ctx.SetValue(connKey, st)
	return tc
}

var errConnClosed = errors.New("connection closed")

func (s *Server) auditAuthFailure(st *connState, failures []string) {
	s.lim.failed(st.ip)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.AuthFailed(failures[len(failures)-1])
	}
	if _, err := s.cfg.Audit.Emit(context.Background(), audit.Event{Type: audit.AuthFailed, Source: st.remote, Details: map[string]any{
		"reason": failures[len(failures)-1], "attempts": failures, "service": "ssh",
	}}); err != nil {
		s.log.Error("audit auth.failed", "err", err)
	}
}

func stateOf(ctx gliderssh.Context) *connState {
	st, _ := ctx.Value(connKey).(*connState)
	return st
}

func (s *Server) serverConfig(ctx gliderssh.Context) *gossh.ServerConfig {
	st := stateOf(ctx)
	return &gossh.ServerConfig{
		MaxAuthTries: 6,
		AuthLogCallback: func(meta gossh.ConnMetadata, method string, err error) {
			if st == nil || method == "none" {
				return
			}
			if err == nil {
				st.mu.Lock()
				first := !st.authed
				st.authed = true
				st.mu.Unlock()
				if first {
					s.unauth.end(st.ip)
					if tc, ok := st.conn.(*trackedConn); ok {
						tc.endGrace()
					}
				}
			}
		},
	}
}

func (s *Server) publicKeyHandler(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	st := stateOf(ctx)
	if st == nil {
		return false
	}
	u, reason, err := s.authenticate(ctx, key, ctx.RemoteAddr())
	if err != nil {
		s.log.Info("ssh authentication refused", "remote", st.remote, "reason", reason, "err", err)
		st.mu.Lock()
		st.failures = append(st.failures, reason)
		st.mu.Unlock()
		return false
	}
	fp := gossh.FingerprintSHA256(key)
	st.mu.Lock()
	st.users[fp] = u
	st.user = u
	st.mu.Unlock()
	perms := ctx.Permissions()
	if perms.Extensions == nil {
		perms.Extensions = map[string]string{}
	}
	perms.Extensions["jumpgate-key"] = fp
	// x/crypto enforces source-address from the returned permissions too.
	perms.CriticalOptions = u.Cert.CriticalOptions
	return true
}

// userOf returns the user that authenticated conn.
func userOf(ctx gliderssh.Context, conn *gossh.ServerConn) *User {
	st := stateOf(ctx)
	if st == nil || conn.Permissions == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.users[conn.Permissions.Extensions["jumpgate-key"]]
}

func (s *Server) refuseGlobal(ctx gliderssh.Context, srv *gliderssh.Server, req *gossh.Request) (bool, []byte) {
	st := stateOf(ctx)
	conn, _ := ctx.Value(gliderssh.ContextKeyConn).(*gossh.ServerConn)
	if conn != nil {
		if u := userOf(ctx, conn); u != nil {
			s.log.Info("remote forwarding refused at the bastion", "user", u.Name, "remote", st.remote)
			s.auditRefusal(u, "", "remote forwarding (-R) is not offered by the bastion", req.Type)
		}
	}
	return false, nil
}

func (s *Server) auditRefusal(u *User, target, reason, what string) {
	if _, err := s.cfg.Audit.Emit(context.Background(), audit.Event{Type: audit.AuthFailed, User: u.Name, Target: target, Source: u.Source,
		Details: map[string]any{"reason": reason, "request": what, "service": "ssh"}}); err != nil {
		s.log.Error("audit refusal", "err", err)
	}
}

func newID(prefix string) string {
	return fmt.Sprintf("%s-%s", prefix, randHex(8))
}

// recordings returns where recordings go.
func (s *Server) recordings() recordings.Store {
	if s.cfg.Recordings != nil {
		return s.cfg.Recordings
	}
	return recordings.Dir{Path: s.cfg.RecordingsDir}
}

// recorderOptions feeds the recording write latency metric.
func (s *Server) recorderOptions() recorder.Options {
	var o recorder.Options
	if s.cfg.Metrics != nil {
		o.SyncObserver = s.cfg.Metrics.RecordingWrite
	}
	return o
}

// limitChannels refuses a channel beyond MaxChannels open at once on its
// connection, so one connection cannot tie up unbounded goroutines and
// buffers.
func (s *Server) limitChannels(h gliderssh.ChannelHandler) gliderssh.ChannelHandler {
	return func(srv *gliderssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, ctx gliderssh.Context) {
		st := stateOf(ctx)
		if st == nil {
			nc.Reject(gossh.Prohibited, "not authenticated")
			return
		}
		if n := st.channels.Add(1); n > int64(s.cfg.MaxChannels) {
			st.channels.Add(-1)
			if st.chanLimitLogged.CompareAndSwap(false, true) {
				s.log.Warn("channel refused: too many open channels on one connection", "remote", st.remote, "max_channels", s.cfg.MaxChannels)
			}
			nc.Reject(gossh.ResourceShortage, fmt.Sprintf("jumpgate: too many channels open on this connection (at most %d)", s.cfg.MaxChannels))
			return
		}
		defer st.channels.Add(-1)
		h(srv, conn, nc, ctx)
	}
}
