package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/google/uuid"

	"github.com/jumpgate/jumpgate/storage"
)

// Event types.
const (
	CertIssued      = "cert.issued"
	CertRevoked     = "cert.revoked"
	HostCertIssued  = "cert.host_issued"
	AuthFailed      = "auth.failed"
	SessionStart    = "session.start"
	SessionEnd      = "session.end"
	Exec            = "exec"
	CommandBlocked  = "command.blocked"
	CommandHeld     = "command.held"
	ForwardEnd      = "forward.end"
	SQLQuery        = "sql.query"
	SQLBlocked      = "sql.blocked"
	SQLHeld         = "sql.held"
	KubeRequest     = "kube.request"
	KubeBlocked     = "kube.blocked"
	RequestCreated  = "request.created"
	RequestApproved = "request.approved"
	RequestDenied   = "request.denied"
	RequestExpired  = "request.expired"
	// AccessEnded: a just-in-time access window closed (sessions ended,
	// outliving certificates revoked).
	AccessEnded    = "access.ended"
	PolicyReloaded = "policy.reloaded"
	PolicyRejected = "policy.rejected"
	ServerStarted  = "server.started"
	// SessionTerminated: someone ended a running session (the console).
	SessionTerminated = "session.terminated"
)

// Event is one audit event as it appears in the JSON lines log.
type Event struct {
	ID       string         `json:"id"`
	Seq      uint64         `json:"seq"`
	Time     time.Time      `json:"time"`
	Type     string         `json:"type"`
	User     string         `json:"user"`
	Target   string         `json:"target"`
	Session  string         `json:"session"`
	Source   string         `json:"source,omitempty"`
	Details  map[string]any `json:"details"`
	PrevHash string         `json:"prev_hash"`
	Hash     string         `json:"hash"`
}

// unhashed is Event without its own hash: the bytes that are hashed.
type unhashed struct {
	ID       string         `json:"id"`
	Seq      uint64         `json:"seq"`
	Time     time.Time      `json:"time"`
	Type     string         `json:"type"`
	User     string         `json:"user"`
	Target   string         `json:"target"`
	Session  string         `json:"session"`
	Source   string         `json:"source,omitempty"`
	Details  map[string]any `json:"details"`
	PrevHash string         `json:"prev_hash"`
}

// Store is the slice of storage the audit log needs.
type Store interface {
	AppendAudit(ctx context.Context, b storage.AuditBuilder) (storage.AuditRecord, error)
	AuditRange(ctx context.Context, fromSeq uint64, limit int) ([]storage.AuditRecord, error)
}

// Log appends events to the chain.
type Log struct {
	store  Store
	clock  func() time.Time
	logger *slog.Logger
	// OnAppend, when set, is called after each durable append (metrics, live views).
	OnAppend func(Event)
}

// New returns a Log over store.
func New(store Store, clock func() time.Time, logger *slog.Logger) *Log {
	if clock == nil {
		clock = time.Now
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Log{store: store, clock: clock, logger: logger}
}

// ErrWrite is wrapped when an event cannot be made durable; callers fail
// closed on it.
var ErrWrite = errors.New("audit: cannot write event")

// Emit appends e to the chain and returns it with id, time, seq and hashes
// set. An error means the event is not durable and the caller must refuse the
// operation it describes.
func (l *Log) Emit(ctx context.Context, e Event) (Event, error) {
	return l.EmitWith(ctx, e, l.store.AppendAudit)
}

// EmitWith is Emit with the append done by appendFn, so a caller can make
// the event part of its own storage transaction (an issued certificate and
// its cert.issued event are written together).
func (l *Log) EmitWith(ctx context.Context, e Event, appendFn func(context.Context, storage.AuditBuilder) (storage.AuditRecord, error)) (Event, error) {
	if err := l.prepare(&e); err != nil {
		return e, err
	}
	rec, err := appendFn(ctx, builder(&e))
	if err != nil {
		l.logger.Error("audit write failed", "type", e.Type, "user", e.User, "err", err)
		return e, fmt.Errorf("%w: %w", ErrWrite, err)
	}
	e.Seq, e.Hash = rec.Seq, rec.Hash
	if l.OnAppend != nil {
		l.OnAppend(e)
	}
	return e, nil
}

// EmitBatch appends events in order, in one durable write where the store
// can (storage.BatchAppender): all are appended or none. A busy forwarder
// hands its finished statements over this way, one commit per batch.
func (l *Log) EmitBatch(ctx context.Context, events []Event) ([]Event, error) {
	ba, ok := l.store.(storage.BatchAppender)
	if !ok {
		for i := range events {
			e, err := l.Emit(ctx, events[i])
			if err != nil {
				return events[:i], err
			}
			events[i] = e
		}
		return events, nil
	}
	builds := make([]storage.AuditBuilder, len(events))
	for i := range events {
		if err := l.prepare(&events[i]); err != nil {
			return nil, err
		}
		builds[i] = builder(&events[i])
	}
	recs, err := ba.AppendAuditBatch(ctx, builds)
	if err != nil {
		l.logger.Error("audit write failed", "events", len(events), "type", events[0].Type, "err", err)
		return nil, fmt.Errorf("%w: %w", ErrWrite, err)
	}
	for i := range events {
		events[i].Seq, events[i].Hash = recs[i].Seq, recs[i].Hash
		if l.OnAppend != nil {
			l.OnAppend(events[i])
		}
	}
	return events, nil
}

// prepare checks e and fills in its id, time and details.
func (l *Log) prepare(e *Event) error {
	if e.Type == "" {
		return fmt.Errorf("%w: event has no type", ErrWrite)
	}
	if e.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrWrite, err)
		}
		e.ID = id.String()
	}
	if e.Time.IsZero() {
		e.Time = l.clock().UTC()
	}
	e.Time = e.Time.UTC().Round(time.Microsecond)
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	return nil
}

// builder seals e at the sequence number and after the hash the store
// gives it.
func builder(e *Event) storage.AuditBuilder {
	return func(seq uint64, prev string) ([]byte, string, error) {
		e.Seq, e.PrevHash = seq, prev
		return Seal(e)
	}
}

// Seal computes e.Hash over e (with PrevHash and Seq set) and returns the
// JSON line. The line is the canonical encoding of the event without its
// hash, with `,"hash":"<hex>"` inserted before the closing brace, so a line
// can be verified from its own bytes.
func Seal(e *Event) ([]byte, string, error) {
	line, err := appendUnhashed(make([]byte, 0, 1024), e) // room for the hash: one allocation
	if err != nil {
		return nil, "", fmt.Errorf("audit: encode: %w", err)
	}
	sum := sha256.Sum256(line)
	var h [64]byte
	hex.Encode(h[:], sum[:])
	e.Hash = string(h[:])
	line = append(line[:len(line)-1], `,"hash":"`...)
	line = append(line, h[:]...)
	line = append(line, `"}`...)
	return line, e.Hash, nil
}

var hashSuffix = regexp.MustCompile(`,"hash":"([0-9a-f]{64})"}$`)

// ErrBroken is wrapped by every chain verification failure.
var ErrBroken = errors.New("audit: chain broken")

// CheckLine verifies one line's own hash and returns the decoded event.
func CheckLine(line []byte) (Event, error) {
	var e Event
	line = bytes.TrimRight(line, "\r\n")
	m := hashSuffix.FindSubmatchIndex(line)
	if m == nil {
		return e, fmt.Errorf("%w: line has no trailing hash", ErrBroken)
	}
	body := append(append([]byte(nil), line[:m[0]]...), '}')
	sum := sha256.Sum256(body)
	want := string(line[m[2]:m[3]])
	if hex.EncodeToString(sum[:]) != want {
		return e, fmt.Errorf("%w: hash does not match content", ErrBroken)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("%w: %v", ErrBroken, err)
	}
	if e.Hash != want {
		return e, fmt.Errorf("%w: duplicate hash field", ErrBroken)
	}
	return e, nil
}

// Verifier checks a sequence of lines link into one chain.
type Verifier struct {
	Count    int
	prevHash string
	prevSeq  uint64
}

// Next checks the next line of the chain.
func (v *Verifier) Next(line []byte) (Event, error) {
	e, err := CheckLine(line)
	if err != nil {
		return e, fmt.Errorf("event %d: %w", v.prevSeq+1, err)
	}
	if e.Seq != v.prevSeq+1 {
		return e, fmt.Errorf("%w: event %d follows %d (missing or reordered events)", ErrBroken, e.Seq, v.prevSeq)
	}
	if e.PrevHash != v.prevHash {
		return e, fmt.Errorf("%w: event %d prev_hash does not match event %d's hash", ErrBroken, e.Seq, v.prevSeq)
	}
	v.prevHash, v.prevSeq = e.Hash, e.Seq
	v.Count++
	return e, nil
}

// Verify walks the whole stored chain. It returns the number of events
// checked and the first break.
func Verify(ctx context.Context, s Store) (int, error) {
	var v Verifier
	from := uint64(1)
	for {
		recs, err := s.AuditRange(ctx, from, 1000)
		if err != nil {
			return v.Count, fmt.Errorf("audit: read: %w", err)
		}
		for _, r := range recs {
			e, err := v.Next(r.JSON)
			if err != nil {
				return v.Count, err
			}
			if r.Seq != e.Seq || r.Hash != e.Hash {
				return v.Count, fmt.Errorf("%w: event %d: index does not match content", ErrBroken, r.Seq)
			}
		}
		if len(recs) < 1000 {
			return v.Count, nil
		}
		from = recs[len(recs)-1].Seq + 1
	}
}

// Filter selects events for List.
type Filter struct {
	Since time.Time
	User  string
	Type  string
	// Session and Target narrow further when set.
	Session string
	Target  string
}

// Match reports whether e passes f.
func (f Filter) Match(e Event) bool {
	return (f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.User == "" || e.User == f.User) &&
		(f.Type == "" || e.Type == f.Type || (len(f.Type) > 1 && f.Type[len(f.Type)-1] == '.' && len(e.Type) > len(f.Type) && e.Type[:len(f.Type)] == f.Type)) &&
		(f.Session == "" || e.Session == f.Session) &&
		(f.Target == "" || e.Target == f.Target)
}

// List returns matching events, oldest first, with their raw lines.
func List(ctx context.Context, s Store, f Filter) ([]Event, [][]byte, error) {
	var events []Event
	var lines [][]byte
	from := uint64(1)
	for {
		recs, err := s.AuditRange(ctx, from, 1000)
		if err != nil {
			return nil, nil, fmt.Errorf("audit: read: %w", err)
		}
		for _, r := range recs {
			var e Event
			dec := json.NewDecoder(bytes.NewReader(r.JSON))
			dec.UseNumber()
			if err := dec.Decode(&e); err != nil {
				return nil, nil, fmt.Errorf("audit: event %d: %w", r.Seq, err)
			}
			if f.Match(e) {
				events = append(events, e)
				lines = append(lines, r.JSON)
			}
		}
		if len(recs) < 1000 {
			return events, lines, nil
		}
		from = recs[len(recs)-1].Seq + 1
	}
}
