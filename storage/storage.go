package storage

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors every backend returns (wrapped) so callers can branch.
var (
	ErrNotFound = errors.New("storage: not found")
	ErrConflict = errors.New("storage: conflict")
	ErrLocked   = errors.New("storage: locked by another process")
	ErrCorrupt  = errors.New("storage: corrupt")
)

// CertRecord is an issued user certificate.
type CertRecord struct {
	Serial     uint64    `json:"serial"`
	KeyID      string    `json:"key_id"`
	User       string    `json:"user"`
	Principals []string  `json:"principals"`
	Groups     []string  `json:"groups,omitempty"`
	Roles      []string  `json:"roles,omitempty"`
	ValidAfter time.Time `json:"valid_after"`
	ValidUntil time.Time `json:"valid_until"`
	PublicKey  string    `json:"public_key_fingerprint"`
	IssuedAt   time.Time `json:"issued_at"`
}

// Revocation revokes certificates by serial or by exact key id.
type Revocation struct {
	Serial    uint64    `json:"serial,omitempty"`
	KeyID     string    `json:"key_id,omitempty"`
	By        string    `json:"by"`
	Reason    string    `json:"reason,omitempty"`
	At        time.Time `json:"at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// AuditRecord is one stored audit event: its sequence number, hash and the
// canonical JSON line that was hashed.
type AuditRecord struct {
	Seq  uint64
	Hash string
	JSON []byte
}

// AuditBuilder builds the next event of the chain from the previous tip. It
// runs inside the backend's transaction, so the chain stays linear however
// many writers there are.
type AuditBuilder func(seq uint64, prevHash string) (line []byte, hash string, err error)

// Request statuses.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusDenied   = "denied"
	StatusExpired  = "expired"
)

// Request kinds.
const (
	KindAccess  = "access"
	KindCommand = "command"
	KindSQL     = "sql"
	KindKube    = "kube"
)

// Request is an access request or a held operation.
type Request struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	User      string    `json:"user"`
	Groups    []string  `json:"groups,omitempty"`
	Target    string    `json:"target"`
	What      string    `json:"what"`
	Reason    string    `json:"reason"`
	Status    string    `json:"status"`
	Session   string    `json:"session,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when a pending request stops waiting.
	ExpiresAt time.Time `json:"expires_at"`
	// Duration is the access window asked for (access requests).
	Duration time.Duration `json:"duration,omitempty"`
	// AccessUntil is the end of an approved access window.
	AccessUntil    time.Time `json:"access_until,omitzero"`
	DecidedBy      string    `json:"decided_by,omitempty"`
	DecidedAt      time.Time `json:"decided_at,omitzero"`
	DecisionReason string    `json:"decision_reason,omitempty"`
	// ClosedAt is when an approved access window was closed out (its
	// sessions ended, outliving certificates revoked).
	ClosedAt time.Time `json:"closed_at,omitzero"`
}

// Session statuses.
const (
	SessionRunning     = "running"
	SessionEnded       = "ended"
	SessionInterrupted = "interrupted"
)

// Session is one entry of the session index.
type Session struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Login     string    `json:"login"`
	Target    string    `json:"target"`
	Kind      string    `json:"kind"` // shell, exec, sftp, subsystem, forward, kube-exec, kube-attach
	Command   string    `json:"command,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end,omitzero"`
	Bytes     int64     `json:"bytes"`
	Status    string    `json:"status"`
	Recording string    `json:"recording,omitempty"` // file name under the recordings dir
	SHA256    string    `json:"sha256,omitempty"`
	Signature string    `json:"signature,omitempty"`
	Replica   string    `json:"replica,omitempty"`
	EndReason string    `json:"end_reason,omitempty"`
	Source    string    `json:"source,omitempty"`
}

// SessionFilter narrows ListSessions; zero fields match everything.
type SessionFilter struct {
	User   string
	Target string
	Status string
	Since  time.Time
}

// Store is everything jumpgate keeps durably.
type Store interface {
	// NextSerial returns a certificate serial never returned before.
	NextSerial(ctx context.Context) (uint64, error)
	PutCert(ctx context.Context, c CertRecord) error
	// PutCertAudited records a certificate and appends its audit event in
	// one transaction: one durable write per issued certificate.
	PutCertAudited(ctx context.Context, c CertRecord, b AuditBuilder) (AuditRecord, error)
	Cert(ctx context.Context, serial uint64) (CertRecord, error)
	CertsByKeyID(ctx context.Context, keyID string) ([]CertRecord, error)
	CertsByUser(ctx context.Context, user string) ([]CertRecord, error)

	AddRevocation(ctx context.Context, r Revocation) error
	Revocations(ctx context.Context) ([]Revocation, error)

	AppendAudit(ctx context.Context, b AuditBuilder) (AuditRecord, error)
	// AuditRange returns records with fromSeq <= Seq, in order, at most limit (0: all).
	AuditRange(ctx context.Context, fromSeq uint64, limit int) ([]AuditRecord, error)

	CreateRequest(ctx context.Context, r Request) error
	Request(ctx context.Context, id string) (Request, error)
	// UpdateRequest applies fn to the stored request atomically.
	UpdateRequest(ctx context.Context, id string, fn func(*Request) error) (Request, error)
	Requests(ctx context.Context) ([]Request, error)

	PutSession(ctx context.Context, s Session) error
	Session(ctx context.Context, id string) (Session, error)
	Sessions(ctx context.Context, f SessionFilter) ([]Session, error)

	// GetKV and PutKV keep small blobs such as generated keys.
	GetKV(ctx context.Context, key string) ([]byte, error)
	// PutKVIfAbsent stores v unless key exists; it returns the stored value.
	PutKVIfAbsent(ctx context.Context, key string, v []byte) ([]byte, error)

	Ping(ctx context.Context) error
	Close() error
}

// Matches reports whether s passes f.
func (f SessionFilter) Matches(s Session) bool {
	return (f.User == "" || s.User == f.User) &&
		(f.Target == "" || s.Target == f.Target) &&
		(f.Status == "" || s.Status == f.Status) &&
		(f.Since.IsZero() || !s.Start.Before(f.Since))
}

// SerialMarker is implemented by backends whose serial counter can be read
// and raised, so `jumpgate storage migrate` never lets a serial repeat.
type SerialMarker interface {
	// SerialHighWater is above every serial ever handed out.
	SerialHighWater(ctx context.Context) (uint64, error)
	// SerialFloor makes every later serial greater than n.
	SerialFloor(ctx context.Context, n uint64) error
}

// TokenLedger is implemented by backends that several replicas share: it
// records the ID tokens traded for certificates, so a token is accepted
// once across all replicas. (bbolt has one process by its file lock; that
// process's own record is enough.)
type TokenLedger interface {
	// MarkTokenUsed records key (a hash of the token) until expires; fresh
	// is false when key is recorded already and has not expired.
	MarkTokenUsed(ctx context.Context, key string, expires time.Time) (fresh bool, err error)
}

// BatchAppender is implemented by backends that append several audit
// records in one durable write (one transaction, one fsync): a busy
// forwarder's events cost one commit per batch, not one per event.
type BatchAppender interface {
	// AppendAuditBatch appends one record per builder, in order, all or
	// none.
	AppendAuditBatch(ctx context.Context, builds []AuditBuilder) ([]AuditRecord, error)
}
