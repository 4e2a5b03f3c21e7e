package postgres

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/policy"
)

// Auditor and Approver are the shared forwarder interfaces.
type (
	Auditor  = forwarders.Auditor
	Approver = forwarders.Approver
)

// Config configures the forwarder. Policy and Audit are required.
type Config struct {
	Policy *policy.Store
	Audit  Auditor
	// Approvals holds statements under sql.review; without it they are refused.
	Approvals Approver
	// HoldTimeout is how long a held statement waits (default 5m).
	HoldTimeout time.Duration
	Logger      *slog.Logger
	Clock       func() time.Time
	// Rand supplies the bastion's cancel keys (default crypto/rand).
	Rand io.Reader
	// Dial reaches targets (default net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ReadSecret reads a credentials file (default os.ReadFile, trimmed).
	ReadSecret func(file string) (string, error)
	// StartupTimeout bounds the client's startup packet and the upstream
	// login (default 15s).
	StartupTimeout time.Duration
	// MaxMessageSize bounds client messages (default 16 MiB);
	// MaxServerMessageSize bounds upstream messages (default 256 MiB).
	MaxMessageSize, MaxServerMessageSize int
	// LogLiterals keeps literals in audited statement text; by default
	// simple-protocol text is normalized ($1 for constants). Bind
	// parameters are never logged.
	LogLiterals bool
	// CatalogTTL is how long a table's column names are cached (default 1m).
	CatalogTTL time.Duration
	// AuditCommitInterval is how long sql.query events of all sessions
	// gather before they are appended in one commit (default
	// audit.DefaultCommitInterval). Results reach the client before their
	// event is durable; a failed commit closes the sessions it held events of.
	AuditCommitInterval time.Duration
}

// Forwarder serves PostgreSQL channels. It is safe for concurrent use.
type Forwarder struct {
	cfg Config
	log *slog.Logger

	cache *stmtCache

	audit forwarders.AuditQueue // sql.query events of every session, in group commits

	mu       sync.Mutex
	keys     map[string]cancelKey // bastion key → upstream key
	catalogs map[string]*catalog  // by target name
}

type cancelKey struct {
	target config.Target
	pid    uint32
	secret []byte
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
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.ReadSecret == nil {
		cfg.ReadSecret = func(file string) (string, error) {
			b, err := os.ReadFile(file)
			return strings.TrimRight(string(b), "\r\n"), err
		}
	}
	if cfg.StartupTimeout <= 0 {
		cfg.StartupTimeout = 15 * time.Second
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 16 << 20
	}
	if cfg.MaxServerMessageSize <= 0 {
		cfg.MaxServerMessageSize = 256 << 20
	}
	if cfg.CatalogTTL <= 0 {
		cfg.CatalogTTL = time.Minute
	}
	return &Forwarder{cfg: cfg, log: cfg.Logger.With("forwarder", "postgres"), keys: map[string]cancelKey{}, catalogs: map[string]*catalog{},
		cache: newStmtCache(4096, 16<<20), audit: forwarders.AuditQueue{Audit: cfg.Audit, Interval: cfg.AuditCommitInterval}}
}

// Close writes the queued audit events and releases the catalog
// connections. Sessions still running fail closed at their next statement.
func (f *Forwarder) Close() {
	f.audit.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.catalogs {
		c.close()
	}
	f.catalogs = map[string]*catalog{}
}

// Errors Serve returns.
var (
	ErrNoAccess      = errors.New("postgres: no access to target")
	ErrStartup       = errors.New("postgres: bad startup")
	ErrUpstream      = errors.New("postgres: upstream login failed")
	ErrUnsafeSetting = errors.New("postgres: upstream setting makes statements unparseable")
)

// Startup codes.
const (
	codeSSL    = 80877103
	codeGSS    = 80877104
	codeCancel = 80877102
	proto30    = 196608
	proto32    = 196610
)

// userError is an error whose message the client may see.
type userError struct {
	code, msg string
	cause     error
}

func (e *userError) Error() string { return e.msg + ": " + fmt.Sprint(e.cause) }
func (e *userError) Unwrap() error { return e.cause }

// Serve implements forwarders.Forwarder.
func (f *Forwarder) Serve(ctx context.Context, conn forwarders.Stream, s forwarders.Session, t config.Target) error {
	log := f.log.With("session", s.ID, "user", s.User, "target", t.Name)
	defer conn.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	timer := time.AfterFunc(f.cfg.StartupTimeout, func() { cancel(fmt.Errorf("%w: startup timed out", ErrStartup)) })
	startup, err := f.readStartup(conn, t)
	if err != nil || startup == nil {
		if err != nil {
			// Let the client read the error instead of a reset: half-close,
			// then drain what it sent (bounded by the startup timer).
			_ = conn.CloseWrite()
			_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
		}
		timer.Stop()
		if c := context.Cause(ctx); c != nil && errors.Is(c, ErrStartup) {
			err = c
		}
		if err != nil {
			log.Info("postgres startup ended", "err", err)
		}
		return err
	}
	p := f.cfg.Policy.Current()
	id := s.Identity()
	pt := policyTarget(t)
	if !p.AccessTo(id, pt).Allowed {
		timer.Stop()
		sendFatal(conn, "28000", "jumpgate: you have no access to "+t.Name)
		return fmt.Errorf("%w: %s", ErrNoAccess, t.Name)
	}
	up, err := f.connectUpstream(ctx, t, startup)
	timer.Stop()
	if err != nil {
		log.Warn("upstream login failed", "err", err)
		sendFatal(conn, "08001", "jumpgate: cannot log in to "+t.Name+"; the bastion logged why")
		return err
	}
	sess := &session{f: f, log: log, ctx: ctx, cancel: cancel, s: s, t: t, pt: pt, id: id, client: conn, up: up.Conn, proto: startup.ProtocolVersion}
	return sess.run(up)
}

func policyTarget(t config.Target) policy.Target {
	return policy.Target{Name: t.Name, Kind: t.Kind, Labels: t.Labels}
}

func sendFatal(w io.Writer, code, msg string) {
	var b []byte
	b = append(b, 'E')
	body := errorBody("FATAL", code, msg)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)+4))
	_, _ = w.Write(append(b, body...))
}

// readStartup answers SSL/GSS requests with 'N', serves a CancelRequest
// (returning nil, nil) and returns the StartupMessage.
func (f *Forwarder) readStartup(conn io.ReadWriter, t config.Target) (*pgproto3.StartupMessage, error) {
	for i := 0; i < 4; i++ {
		var hdr [4]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStartup, err)
		}
		n := int(int32(binary.BigEndian.Uint32(hdr[:])))
		if n < 8 || n > 10000 {
			sendFatal(conn, "08P01", "jumpgate: invalid startup packet length")
			return nil, fmt.Errorf("%w: startup length %d", ErrBadLength, n)
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(conn, body); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStartup, err)
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case codeSSL, codeGSS:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case codeCancel:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(body); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrStartup, err)
			}
			f.cancel(t, cr)
			return nil, nil
		case proto30, proto32:
			var sm pgproto3.StartupMessage
			if err := sm.Decode(body); err != nil {
				sendFatal(conn, "08P01", "jumpgate: invalid startup packet")
				return nil, fmt.Errorf("%w: %w", ErrStartup, err)
			}
			if sm.Parameters["replication"] != "" && sm.Parameters["replication"] != "false" && sm.Parameters["replication"] != "0" {
				sendFatal(conn, "28000", "jumpgate: replication connections are not allowed")
				return nil, fmt.Errorf("%w: replication requested", ErrStartup)
			}
			return &sm, nil
		default:
			sendFatal(conn, "08P01", "jumpgate: unsupported frontend protocol")
			return nil, fmt.Errorf("%w: protocol code %d", ErrStartup, code)
		}
	}
	return nil, fmt.Errorf("%w: too many negotiation requests", ErrStartup)
}

// passParams are the client startup parameters sent upstream.
var passParams = map[string]bool{
	"application_name": true, "datestyle": true, "timezone": true, "extra_float_digits": true,
	"intervalstyle": true, "search_path": true, "lc_monetary": true, "lc_numeric": true, "lc_time": true,
	"bytea_output": true, "statement_timeout": true, "lock_timeout": true, "idle_in_transaction_session_timeout": true,
}

func sslmode(t config.Target) string {
	switch t.TLS {
	case "disable", "require", "verify-full", "prefer":
		return t.TLS
	}
	return "prefer"
}

func (f *Forwarder) pgConfig(t config.Target) (*pgconn.Config, error) {
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: target address %q: %w", ErrUpstream, t.Address, err)
	}
	dsn := fmt.Sprintf("host='%s' port='%s' sslmode=%s", host, port, sslmode(t))
	if t.CAFile != "" {
		dsn += fmt.Sprintf(" sslrootcert='%s'", t.CAFile)
	}
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	cfg.User = t.Credentials.User
	cfg.Database = t.Database
	if t.Credentials.PasswordFile != "" {
		pw, err := f.cfg.ReadSecret(t.Credentials.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: reading the password file: %w", ErrUpstream, err)
		}
		cfg.Password = pw
	}
	cfg.DialFunc = f.cfg.Dial
	cfg.ConnectTimeout = f.cfg.StartupTimeout
	cfg.RuntimeParams = map[string]string{"client_encoding": "UTF8"}
	return cfg, nil
}

func (f *Forwarder) connectUpstream(ctx context.Context, t config.Target, sm *pgproto3.StartupMessage) (*pgconn.HijackedConn, error) {
	cfg, err := f.pgConfig(t)
	if err != nil {
		return nil, err
	}
	if cfg.Database == "" {
		cfg.Database = sm.Parameters["database"]
	}
	for k, v := range sm.Parameters {
		if passParams[strings.ToLower(k)] {
			cfg.RuntimeParams[k] = v
		}
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "jumpgate"
	}
	if sm.ProtocolVersion == proto32 {
		cfg.MaxProtocolVersion = "3.2"
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.StartupTimeout)
	defer cancel()
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	hc, err := c.Hijack()
	if err != nil {
		c.Close(context.Background())
		return nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	if hc.Frontend.ReadBufferLen() > 0 {
		hc.Conn.Close()
		return nil, fmt.Errorf("%w: unexpected data after login", ErrUpstream)
	}
	return hc, nil
}

// newKey registers the upstream key and returns the bastion's own.
func (f *Forwarder) newKey(t config.Target, proto uint32, pid uint32, secret []byte) (uint32, []byte, func()) {
	n := 4
	if proto == proto32 {
		n = 32
	}
	b := make([]byte, 4+n)
	if _, err := io.ReadFull(f.cfg.Rand, b); err != nil {
		return 0, nil, func() {}
	}
	k := string(b)
	f.mu.Lock()
	f.keys[k] = cancelKey{target: t, pid: pid, secret: secret}
	f.mu.Unlock()
	return binary.BigEndian.Uint32(b), b[4:], func() {
		f.mu.Lock()
		delete(f.keys, k)
		f.mu.Unlock()
	}
}

// cancel forwards a CancelRequest carrying a bastion key to the upstream
// with the upstream's real key.
func (f *Forwarder) cancel(t config.Target, cr pgproto3.CancelRequest) {
	k := binary.BigEndian.AppendUint32(nil, cr.ProcessID)
	k = append(k, cr.SecretKey...)
	f.mu.Lock()
	ck, ok := f.keys[string(k)]
	f.mu.Unlock()
	if !ok || ck.target.Name != t.Name {
		f.log.Info("cancel request with an unknown key", "target", t.Name)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.StartupTimeout)
	defer cancel()
	conn, err := f.cfg.Dial(ctx, "tcp", ck.target.Address)
	if err != nil {
		f.log.Warn("cancel: target unreachable", "target", t.Name, "err", err)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(f.cfg.StartupTimeout))
	var w io.ReadWriter = conn
	if m := sslmode(ck.target); m == "require" || m == "verify-full" {
		cfg, err := f.pgConfig(ck.target)
		if err != nil || cfg.TLSConfig == nil {
			return
		}
		if _, err := conn.Write(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), codeSSL)); err != nil {
			return
		}
		var resp [1]byte
		if _, err := io.ReadFull(conn, resp[:]); err != nil || resp[0] != 'S' {
			return
		}
		tc := tls.Client(conn, cfg.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return
		}
		w = tc
	}
	msg, err := (&pgproto3.CancelRequest{ProcessID: ck.pid, SecretKey: ck.secret}).Encode(nil)
	if err != nil {
		return
	}
	if _, err := w.Write(msg); err != nil {
		f.log.Warn("cancel: write", "err", err)
		return
	}
	// The server closes the connection when done.
	_, _ = io.Copy(io.Discard, io.LimitReader(w, 1))
	f.log.Info("cancel request forwarded", "target", t.Name)
}

func (f *Forwarder) catalogFor(t config.Target) *catalog {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.catalogs[t.Name]
	if c == nil {
		c = f.newCatalog(t)
		f.catalogs[t.Name] = c
	}
	return c
}

// newCatalog is apart from catalogFor so that the target the connect
// function keeps is copied to the heap only when a catalog is made.
func (f *Forwarder) newCatalog(t config.Target) *catalog {
	return &catalog{ttl: f.cfg.CatalogTTL, now: f.cfg.Clock, connect: func(ctx context.Context) (*pgconn.PgConn, error) {
		cfg, err := f.pgConfig(t)
		if err != nil {
			return nil, err
		}
		cfg.RuntimeParams["application_name"] = "jumpgate-catalog"
		return pgconn.ConnectConfig(ctx, cfg)
	}}
}
