package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jumpgate/jumpgate/storage"
)

// ErrUnavailable is wrapped when the database cannot be reached or refuses
// the connection (wrong address, credentials or database name).
var ErrUnavailable = errors.New("pgstore: database unavailable")

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the listener's reconnects; nil means slog.Default().
	Logger *slog.Logger
	// ReconnectDelay is the first wait before the requests listener
	// reconnects after an error; it doubles up to 5s. Zero means 250ms.
	ReconnectDelay time.Duration
	// MaxConns caps the connection pool; zero keeps pgx's default.
	MaxConns int32
}

// Store is a PostgreSQL-backed storage.Store shared by several replicas.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	delay  time.Duration

	tokenMu    sync.Mutex
	tokenSwept time.Time // last sweep of expired used_tokens rows
}

var (
	_ storage.Store         = (*Store)(nil)
	_ storage.TokenLedger   = (*Store)(nil)
	_ storage.BatchAppender = (*Store)(nil)
)

// requestsChannel is the NOTIFY channel carrying changed request ids.
const requestsChannel = "jumpgate_requests"

// Open connects to the database at url (a postgres:// URL or key=value
// string), applies the embedded schema migrations and returns the Store. An
// unparsable url, an unreachable or refusing server wraps ErrUnavailable; a
// database whose schema this release does not know wraps storage.ErrCorrupt.
// Passwords never appear in the errors. ctx bounds connecting and migrating
// (or set connect_timeout in url); it is not kept.
func Open(ctx context.Context, url string) (*Store, error) {
	return OpenWith(ctx, url, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors redact the password.
		return nil, fmt.Errorf("pgstore: %w: %v", ErrUnavailable, err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "jumpgate"
	}
	ms, err := loadMigrations(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w: %v", ErrUnavailable, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connect %s@%s:%d/%s: %w: %v", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, ErrUnavailable, err)
	}
	if err := migrate(ctx, pool, ms); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, logger: opts.Logger, delay: opts.ReconnectDelay}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.delay <= 0 {
		s.delay = 250 * time.Millisecond
	}
	return s, nil
}

// Close closes every pooled connection. Listeners started with
// ListenRequests end with their own context.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks the database answers and holds the audit tip.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM audit_tip WHERE id = 1").Scan(&n)
	if err != nil {
		return fmt.Errorf("pgstore: ping: %w: %v", ErrUnavailable, err)
	}
	if n != 1 {
		return fmt.Errorf("pgstore: ping: %w: audit tip row missing", storage.ErrCorrupt)
	}
	return nil
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// NextSerial returns the next value of the shared serial sequence.
func (s *Store) NextSerial(ctx context.Context) (uint64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT nextval('cert_serial')").Scan(&n); err != nil {
		return 0, fmt.Errorf("pgstore: next serial: %w", err)
	}
	return uint64(n), nil
}

// execer is what both the pool and a transaction offer.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func putCert(ctx context.Context, db execer, c storage.CertRecord) error {
	rec, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = db.Exec(ctx, `INSERT INTO certs (serial, key_id, user_name, record) VALUES ($1, $2, $3, $4)
		ON CONFLICT (serial) DO UPDATE SET key_id = EXCLUDED.key_id, user_name = EXCLUDED.user_name, record = EXCLUDED.record`,
		int64(c.Serial), c.KeyID, c.User, rec)
	return err
}

// PutCert records (or replaces) an issued certificate.
func (s *Store) PutCert(ctx context.Context, c storage.CertRecord) error {
	if err := putCert(ctx, s.pool, c); err != nil {
		return fmt.Errorf("pgstore: record certificate %d: %w", c.Serial, err)
	}
	return nil
}

// PutCertAudited records a certificate and appends its audit event in one
// transaction.
func (s *Store) PutCertAudited(ctx context.Context, c storage.CertRecord, build storage.AuditBuilder) (storage.AuditRecord, error) {
	var rec storage.AuditRecord
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := putCert(ctx, tx, c); err != nil {
			return err
		}
		var err error
		rec, err = appendAudit(ctx, tx, build)
		return err
	})
	if err != nil {
		return storage.AuditRecord{}, fmt.Errorf("pgstore: record certificate: %w", err)
	}
	return rec, nil
}

func collectJSON[T any](rows pgx.Rows) ([]T, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		var v T
		var b []byte
		if err := row.Scan(&b); err != nil {
			return v, err
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return v, fmt.Errorf("%w: %v", storage.ErrCorrupt, err)
		}
		return v, nil
	})
}

// Cert returns the certificate with the given serial.
func (s *Store) Cert(ctx context.Context, serial uint64) (storage.CertRecord, error) {
	rows, _ := s.pool.Query(ctx, "SELECT record FROM certs WHERE serial = $1", int64(serial))
	cs, err := collectJSON[storage.CertRecord](rows)
	if err != nil {
		return storage.CertRecord{}, fmt.Errorf("pgstore: certificate %d: %w", serial, err)
	}
	if len(cs) == 0 {
		return storage.CertRecord{}, fmt.Errorf("pgstore: certificate %d: %w", serial, storage.ErrNotFound)
	}
	return cs[0], nil
}

// CertsByKeyID returns certificates whose key id equals keyID exactly.
func (s *Store) CertsByKeyID(ctx context.Context, keyID string) ([]storage.CertRecord, error) {
	rows, _ := s.pool.Query(ctx, "SELECT record FROM certs WHERE key_id = $1 ORDER BY serial", keyID)
	cs, err := collectJSON[storage.CertRecord](rows)
	if err != nil {
		return nil, fmt.Errorf("pgstore: certificates of key %q: %w", keyID, err)
	}
	return cs, nil
}

// CertsByUser returns certificates issued to user.
func (s *Store) CertsByUser(ctx context.Context, user string) ([]storage.CertRecord, error) {
	rows, _ := s.pool.Query(ctx, "SELECT record FROM certs WHERE user_name = $1 ORDER BY serial", user)
	cs, err := collectJSON[storage.CertRecord](rows)
	if err != nil {
		return nil, fmt.Errorf("pgstore: certificates of %q: %w", user, err)
	}
	return cs, nil
}

// AddRevocation stores a revocation.
func (s *Store) AddRevocation(ctx context.Context, r storage.Revocation) error {
	rec, err := json.Marshal(r)
	if err == nil {
		_, err = s.pool.Exec(ctx, "INSERT INTO revocations (record) VALUES ($1)", rec)
	}
	if err != nil {
		return fmt.Errorf("pgstore: add revocation: %w", err)
	}
	return nil
}

// Revocations returns every revocation in the order they were made.
func (s *Store) Revocations(ctx context.Context) ([]storage.Revocation, error) {
	rows, _ := s.pool.Query(ctx, "SELECT record FROM revocations ORDER BY id")
	out, err := collectJSON[storage.Revocation](rows)
	if err != nil {
		return nil, fmt.Errorf("pgstore: revocations: %w", err)
	}
	return out, nil
}

// AppendAudit appends one event to the chain.
func (s *Store) AppendAudit(ctx context.Context, build storage.AuditBuilder) (storage.AuditRecord, error) {
	var rec storage.AuditRecord
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		rec, err = appendAudit(ctx, tx, build)
		return err
	})
	if err != nil {
		return storage.AuditRecord{}, fmt.Errorf("pgstore: append audit: %w", err)
	}
	return rec, nil
}

// AppendAuditBatch appends a record per builder in one transaction.
func (s *Store) AppendAuditBatch(ctx context.Context, builds []storage.AuditBuilder) ([]storage.AuditRecord, error) {
	var recs []storage.AuditRecord
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		recs = recs[:0]
		for _, build := range builds {
			rec, err := appendAudit(ctx, tx, build)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: append audit: %w", err)
	}
	return recs, nil
}

// appendAudit locks the tip row, so concurrent appends on every replica
// queue behind each other and each builds on the committed tip.
func appendAudit(ctx context.Context, tx pgx.Tx, build storage.AuditBuilder) (storage.AuditRecord, error) {
	var tipSeq int64
	var tipHash string
	err := tx.QueryRow(ctx, "SELECT seq, hash FROM audit_tip WHERE id = 1 FOR UPDATE").Scan(&tipSeq, &tipHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.AuditRecord{}, fmt.Errorf("%w: audit tip row missing", storage.ErrCorrupt)
	}
	if err != nil {
		return storage.AuditRecord{}, err
	}
	seq := uint64(tipSeq) + 1
	line, hash, err := build(seq, tipHash)
	if err != nil {
		return storage.AuditRecord{}, err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO audit (seq, hash, event) VALUES ($1, $2, $3)", int64(seq), hash, line); err != nil {
		return storage.AuditRecord{}, err
	}
	if _, err := tx.Exec(ctx, "UPDATE audit_tip SET seq = $1, hash = $2 WHERE id = 1", int64(seq), hash); err != nil {
		return storage.AuditRecord{}, err
	}
	return storage.AuditRecord{Seq: seq, Hash: hash, JSON: line}, nil
}

// AuditRange returns records with fromSeq <= Seq in order, at most limit
// (0: all).
func (s *Store) AuditRange(ctx context.Context, fromSeq uint64, limit int) ([]storage.AuditRecord, error) {
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	if fromSeq > 1<<63-1 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, "SELECT seq, hash, event FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2", int64(fromSeq), lim)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.AuditRecord, error) {
		var seq int64
		var r storage.AuditRecord
		err := row.Scan(&seq, &r.Hash, &r.JSON)
		r.Seq = uint64(seq)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: audit range: %w", err)
	}
	return out, nil
}

func notifyRequest(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", requestsChannel, id)
	return err
}

// CreateRequest stores a new request and announces it; an existing id is a
// storage.ErrConflict.
func (s *Store) CreateRequest(ctx context.Context, r storage.Request) error {
	rec, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("pgstore: request %s: %w", r.ID, err)
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "INSERT INTO requests (id, created_at, record) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING", r.ID, r.CreatedAt, rec)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrConflict
		}
		return notifyRequest(ctx, tx, r.ID)
	})
	if err != nil {
		return fmt.Errorf("pgstore: request %s: %w", r.ID, err)
	}
	return nil
}

// Request returns one request.
func (s *Store) Request(ctx context.Context, id string) (storage.Request, error) {
	rows, _ := s.pool.Query(ctx, "SELECT record FROM requests WHERE id = $1", id)
	rs, err := collectJSON[storage.Request](rows)
	if err != nil {
		return storage.Request{}, fmt.Errorf("pgstore: request %s: %w", id, err)
	}
	if len(rs) == 0 {
		return storage.Request{}, fmt.Errorf("pgstore: request %s: %w", id, storage.ErrNotFound)
	}
	return rs[0], nil
}

// errFn marks an error returned by an UpdateRequest callback, which is
// passed back unwrapped as boltstore does.
type errFn struct{ err error }

func (e errFn) Error() string { return e.err.Error() }

// UpdateRequest locks the request row, applies fn, stores the result and
// announces the change, all in one transaction. An error from fn is
// returned as is and nothing changes.
func (s *Store) UpdateRequest(ctx context.Context, id string, fn func(*storage.Request) error) (storage.Request, error) {
	var r storage.Request
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var b []byte
		err := tx.QueryRow(ctx, "SELECT record FROM requests WHERE id = $1 FOR UPDATE", id).Scan(&b)
		if errors.Is(err, pgx.ErrNoRows) {
			return storage.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%w: %v", storage.ErrCorrupt, err)
		}
		if err := fn(&r); err != nil {
			return errFn{err}
		}
		rec, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE requests SET record = $2, created_at = $3 WHERE id = $1", id, rec, r.CreatedAt); err != nil {
			return err
		}
		return notifyRequest(ctx, tx, id)
	})
	var fe errFn
	if errors.As(err, &fe) {
		return r, fe.err
	}
	if err != nil {
		return r, fmt.Errorf("pgstore: request %s: %w", id, err)
	}
	return r, nil
}

// Requests returns all requests, oldest first.
func (s *Store) Requests(ctx context.Context) ([]storage.Request, error) {
	rows, _ := s.pool.Query(ctx, "SELECT record FROM requests ORDER BY created_at, id")
	out, err := collectJSON[storage.Request](rows)
	if err != nil {
		return nil, fmt.Errorf("pgstore: requests: %w", err)
	}
	return out, nil
}

// PutSession creates or replaces a session index entry.
func (s *Store) PutSession(ctx context.Context, sess storage.Session) error {
	rec, err := json.Marshal(sess)
	if err == nil {
		_, err = s.pool.Exec(ctx, `INSERT INTO sessions (id, user_name, target, status, start, record) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (id) DO UPDATE SET user_name = EXCLUDED.user_name, target = EXCLUDED.target,
				status = EXCLUDED.status, start = EXCLUDED.start, record = EXCLUDED.record`,
			sess.ID, sess.User, sess.Target, sess.Status, sess.Start, rec)
	}
	if err != nil {
		return fmt.Errorf("pgstore: session %s: %w", sess.ID, err)
	}
	return nil
}

// Session returns one session.
func (s *Store) Session(ctx context.Context, id string) (storage.Session, error) {
	rows, _ := s.pool.Query(ctx, "SELECT record FROM sessions WHERE id = $1", id)
	ss, err := collectJSON[storage.Session](rows)
	if err != nil {
		return storage.Session{}, fmt.Errorf("pgstore: session %s: %w", id, err)
	}
	if len(ss) == 0 {
		return storage.Session{}, fmt.Errorf("pgstore: session %s: %w", id, storage.ErrNotFound)
	}
	return ss[0], nil
}

// Sessions lists sessions matching f, oldest first. The database narrows by
// the indexed columns; f.Matches then decides exactly (timestamps are kept
// to the microsecond in columns, to the nanosecond in records).
func (s *Store) Sessions(ctx context.Context, f storage.SessionFilter) ([]storage.Session, error) {
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	rows, _ := s.pool.Query(ctx, `SELECT record FROM sessions
		WHERE ($1 = '' OR user_name = $1) AND ($2 = '' OR target = $2) AND ($3 = '' OR status = $3)
			AND ($4::timestamptz IS NULL OR start >= date_trunc('microseconds', $4::timestamptz) - interval '1 microsecond')
		ORDER BY start, id`, f.User, f.Target, f.Status, since)
	all, err := collectJSON[storage.Session](rows)
	if err != nil {
		return nil, fmt.Errorf("pgstore: sessions: %w", err)
	}
	out := all[:0]
	for _, sess := range all {
		if f.Matches(sess) {
			out = append(out, sess)
		}
	}
	return out, nil
}

// GetKV returns a stored blob.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, "SELECT value FROM kv WHERE key = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pgstore: %s: %w", key, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s: %w", key, err)
	}
	return v, nil
}

// PutKVIfAbsent stores v under key unless present and returns the stored
// value: the first writer of all replicas wins.
func (s *Store) PutKVIfAbsent(ctx context.Context, key string, v []byte) ([]byte, error) {
	if v == nil {
		v = []byte{}
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, v); err != nil {
		return nil, fmt.Errorf("pgstore: %s: %w", key, err)
	}
	// A new statement sees the row whoever committed it: the conflict above
	// waited for the other writer to commit.
	return s.GetKV(ctx, key)
}

// SerialHighWater returns the sequence's last value.
func (s *Store) SerialHighWater(ctx context.Context) (uint64, error) {
	var n int64
	var called bool
	if err := s.pool.QueryRow(ctx, "SELECT last_value, is_called FROM cert_serial").Scan(&n, &called); err != nil {
		return 0, fmt.Errorf("pgstore: serial: %w", err)
	}
	return uint64(n), nil
}

// SerialFloor makes every later serial greater than n.
func (s *Store) SerialFloor(ctx context.Context, n uint64) error {
	_, err := s.pool.Exec(ctx, "SELECT setval('cert_serial', GREATEST($1::bigint, (SELECT last_value FROM cert_serial)))", int64(n))
	if err != nil {
		return fmt.Errorf("pgstore: serial floor: %w", err)
	}
	return nil
}
