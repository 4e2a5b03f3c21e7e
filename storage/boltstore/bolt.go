package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/jumpgate/jumpgate/storage"
)

var (
	bMeta     = []byte("meta")
	bCerts    = []byte("certs")
	bKeyIDs   = []byte("cert_key_ids")
	bRevoked  = []byte("revocations")
	bAudit    = []byte("audit")
	bRequests = []byte("requests")
	bSessions = []byte("sessions")
	bKV       = []byte("kv")

	kSerialHigh = []byte("serial_high")
	kAuditTip   = []byte("audit_tip")
)

// serialBlock is how many serials one durable reservation covers.
const serialBlock = 512

// Store is a bbolt-backed storage.Store.
type Store struct {
	db *bolt.DB

	mu         sync.Mutex
	nextSerial uint64
	highSerial uint64 // exclusive upper bound of the reserved block

	// dropEvery is how often appends drop the file's pages from the
	// process's page tables (dropMapped); lastDrop is when it last did.
	dropEvery time.Duration
	lastDrop  atomic.Int64
}

// defaultDropEvery: a second of appends maps at most what they wrote.
const defaultDropEvery = time.Second

// appended is called after audit appends: now and then it drops the mapped
// pages of the file (dropMapped), so RSS does not grow with the audit log.
func (s *Store) appended() {
	now := time.Now().UnixNano()
	last := s.lastDrop.Load()
	if now-last < int64(s.dropEvery) || !s.lastDrop.CompareAndSwap(last, now) {
		return
	}
	if err := dropMapped(s.db); err != nil {
		slog.Warn("boltstore: cannot drop mapped pages", "err", err)
	}
}

var (
	_ storage.Store         = (*Store)(nil)
	_ storage.BatchAppender = (*Store)(nil)
)

// Open opens (creating if absent) the bbolt file at path. A file locked by
// another process yields storage.ErrLocked; a file that is not a bbolt
// database yields storage.ErrCorrupt. Neither is ever modified.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	// An existing file is checked before bbolt may write to it: a file it
	// cannot read back whole is refused and left exactly as it is.
	if st, err := os.Stat(path); err == nil {
		if err := checkFile(path, st.Size()); err != nil {
			return nil, err
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("boltstore: %s: %w (is another jumpgate running?)", path, storage.ErrLocked)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrChecksum):
			return nil, fmt.Errorf("boltstore: %s: %w: %v (restore it from a backup; it was not modified)", path, storage.ErrCorrupt, err)
		default:
			return nil, fmt.Errorf("boltstore: open %s: %w: %v", path, storage.ErrCorrupt, err)
		}
	}
	// A deep check of the file before anything is written to it: a torn or
	// tampered page shows up here rather than in the middle of a session.
	if err := deepCheck(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: %s: %w: %v (restore it from a backup; it was not modified)", path, storage.ErrCorrupt, err)
	}
	_ = dropMapped(db) // the check read every page; none of them is needed now
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bCerts, bKeyIDs, bRevoked, bAudit, bRequests, bSessions, bKV} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	// Writers that arrive within 2ms share one fsynced transaction.
	db.MaxBatchDelay = 2 * time.Millisecond
	return &Store{db: db, dropEvery: defaultDropEvery}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database is open.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bMeta) == nil {
			return fmt.Errorf("boltstore: %w: meta bucket missing", storage.ErrCorrupt)
		}
		return nil
	})
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// NextSerial hands out serials from a durably reserved block; a crash skips
// the rest of the block, so a serial is never issued twice.
func (s *Store) NextSerial(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nextSerial == 0 || s.nextSerial >= s.highSerial {
		var lo, hi uint64
		err := s.db.Update(func(tx *bolt.Tx) error {
			m := tx.Bucket(bMeta)
			lo = 1
			if v := m.Get(kSerialHigh); v != nil {
				lo = binary.BigEndian.Uint64(v)
			}
			hi = lo + serialBlock
			return m.Put(kSerialHigh, u64(hi))
		})
		if err != nil {
			return 0, fmt.Errorf("boltstore: reserve serials: %w", err)
		}
		s.nextSerial, s.highSerial = lo, hi
	}
	n := s.nextSerial
	s.nextSerial++
	return n, nil
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

// PutCert records an issued certificate.
func (s *Store) PutCert(ctx context.Context, c storage.CertRecord) error {
	return s.db.Batch(func(tx *bolt.Tx) error { return putCert(tx, c) })
}

func putCert(tx *bolt.Tx, c storage.CertRecord) error {
	if err := putJSON(tx.Bucket(bCerts), u64(c.Serial), c); err != nil {
		return err
	}
	return tx.Bucket(bKeyIDs).Put(append([]byte(c.KeyID+"\x00"), u64(c.Serial)...), nil)
}

// PutCertAudited records a certificate and its audit event atomically.
func (s *Store) PutCertAudited(ctx context.Context, c storage.CertRecord, build storage.AuditBuilder) (storage.AuditRecord, error) {
	var rec storage.AuditRecord
	err := s.db.Batch(func(tx *bolt.Tx) error {
		if err := putCert(tx, c); err != nil {
			return err
		}
		var err error
		rec, err = appendAudit(tx, build)
		return err
	})
	if err != nil {
		return storage.AuditRecord{}, fmt.Errorf("boltstore: record certificate: %w", err)
	}
	s.appended()
	return rec, nil
}

// Cert returns the certificate with the given serial.
func (s *Store) Cert(ctx context.Context, serial uint64) (storage.CertRecord, error) {
	var c storage.CertRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bCerts).Get(u64(serial))
		if v == nil {
			return fmt.Errorf("boltstore: certificate %d: %w", serial, storage.ErrNotFound)
		}
		return json.Unmarshal(v, &c)
	})
	return c, err
}

// CertsByKeyID returns certificates whose key id equals keyID exactly.
func (s *Store) CertsByKeyID(ctx context.Context, keyID string) ([]storage.CertRecord, error) {
	var out []storage.CertRecord
	prefix := []byte(keyID + "\x00")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bKeyIDs).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			var rec storage.CertRecord
			if err := json.Unmarshal(tx.Bucket(bCerts).Get(k[len(prefix):]), &rec); err != nil {
				return err
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// CertsByUser returns certificates issued to user.
func (s *Store) CertsByUser(ctx context.Context, user string) ([]storage.CertRecord, error) {
	var out []storage.CertRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bCerts).ForEach(func(k, v []byte) error {
			var rec storage.CertRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			if rec.User == user {
				out = append(out, rec)
			}
			return nil
		})
	})
	return out, err
}

// AddRevocation stores a revocation.
func (s *Store) AddRevocation(ctx context.Context, r storage.Revocation) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRevoked)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return putJSON(b, u64(seq), r)
	})
}

// Revocations returns every revocation in the order they were made.
func (s *Store) Revocations(ctx context.Context) ([]storage.Revocation, error) {
	var out []storage.Revocation
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRevoked).ForEach(func(k, v []byte) error {
			var r storage.Revocation
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

type auditTip struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// auditValue is how records written before the stored value became the
// line itself were kept; they are still read.
type auditValue struct {
	Hash string          `json:"hash"`
	JSON json.RawMessage `json:"event"`
}

var oldAuditValue = []byte(`{"hash":`)

// auditHash returns the hash a stored line ends with (`,"hash":"<hex>"}`).
func auditHash(line []byte) (string, bool) {
	const tail = len(`,"hash":"`) + 64 + len(`"}`)
	if len(line) < tail || !bytes.HasSuffix(line, []byte(`"}`)) || !bytes.HasPrefix(line[len(line)-tail:], []byte(`,"hash":"`)) {
		return "", false
	}
	return string(line[len(line)-tail+len(`,"hash":"`) : len(line)-2]), true
}

// decodeAudit reads one stored audit value: the event's line (which ends
// with its hash), or the older {"hash","event"} wrapper.
func decodeAudit(seq uint64, v []byte) (storage.AuditRecord, error) {
	if bytes.HasPrefix(v, oldAuditValue) {
		var av auditValue
		if err := json.Unmarshal(v, &av); err != nil {
			return storage.AuditRecord{}, fmt.Errorf("%w: audit record %d: %v", storage.ErrCorrupt, seq, err)
		}
		return storage.AuditRecord{Seq: seq, Hash: av.Hash, JSON: append([]byte(nil), av.JSON...)}, nil
	}
	h, ok := auditHash(v)
	if !ok {
		return storage.AuditRecord{}, fmt.Errorf("%w: audit record %d: no trailing hash", storage.ErrCorrupt, seq)
	}
	return storage.AuditRecord{Seq: seq, Hash: h, JSON: append([]byte(nil), v...)}, nil
}

// AppendAudit appends one event to the chain inside a transaction.
func (s *Store) AppendAudit(ctx context.Context, build storage.AuditBuilder) (storage.AuditRecord, error) {
	var rec storage.AuditRecord
	err := s.db.Batch(func(tx *bolt.Tx) error {
		var err error
		rec, err = appendAudit(tx, build)
		return err
	})
	if err != nil {
		return storage.AuditRecord{}, fmt.Errorf("boltstore: append audit: %w", err)
	}
	s.appended()
	return rec, nil
}

// AppendAuditBatch appends a record per builder in one transaction. Its
// callers have gathered the batch already (audit.Queue), so it commits at
// once rather than waiting out bbolt's batch window for more writers.
func (s *Store) AppendAuditBatch(ctx context.Context, builds []storage.AuditBuilder) ([]storage.AuditRecord, error) {
	var recs []storage.AuditRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		recs, err = appendAudits(tx, builds, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: append audit: %w", err)
	}
	s.appended()
	return recs, nil
}

func appendAudit(tx *bolt.Tx, build storage.AuditBuilder) (storage.AuditRecord, error) {
	recs, err := appendAudits(tx, []storage.AuditBuilder{build}, nil)
	if err != nil {
		return storage.AuditRecord{}, err
	}
	return recs[0], nil
}

// appendAudits appends one record per builder after the chain's tip, which
// it reads and writes once. The stored value is the line itself (it ends
// with its hash), and the bucket is filled to the brim: keys only ever
// grow, so half-empty pages would never be filled later.
func appendAudits(tx *bolt.Tx, builds []storage.AuditBuilder, recs []storage.AuditRecord) ([]storage.AuditRecord, error) {
	m := tx.Bucket(bMeta)
	var tip auditTip
	if v := m.Get(kAuditTip); v != nil {
		if err := json.Unmarshal(v, &tip); err != nil {
			return nil, fmt.Errorf("%w: audit tip: %v", storage.ErrCorrupt, err)
		}
	}
	b := tx.Bucket(bAudit)
	b.FillPercent = 1
	for _, build := range builds {
		seq := tip.Seq + 1
		line, hash, err := build(seq, tip.Hash)
		if err != nil {
			return nil, err
		}
		if h, ok := auditHash(line); !ok || h != hash {
			return nil, fmt.Errorf("boltstore: audit line %d does not end with its hash", seq)
		}
		if err := b.Put(u64(seq), line); err != nil {
			return nil, err
		}
		recs = append(recs, storage.AuditRecord{Seq: seq, Hash: hash, JSON: line})
		tip = auditTip{Seq: seq, Hash: hash}
	}
	return recs, putJSON(m, kAuditTip, tip)
}

// AuditRange returns audit records from fromSeq on.
func (s *Store) AuditRange(ctx context.Context, fromSeq uint64, limit int) ([]storage.AuditRecord, error) {
	var out []storage.AuditRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAudit).Cursor()
		for k, v := c.Seek(u64(fromSeq)); k != nil; k, v = c.Next() {
			rec, err := decodeAudit(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, rec)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// CreateRequest stores a new request; an existing id is a conflict.
func (s *Store) CreateRequest(ctx context.Context, r storage.Request) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRequests)
		if b.Get([]byte(r.ID)) != nil {
			return fmt.Errorf("boltstore: request %s: %w", r.ID, storage.ErrConflict)
		}
		return putJSON(b, []byte(r.ID), r)
	})
}

// Request returns one request.
func (s *Store) Request(ctx context.Context, id string) (storage.Request, error) {
	var r storage.Request
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bRequests).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("boltstore: request %s: %w", id, storage.ErrNotFound)
		}
		return json.Unmarshal(v, &r)
	})
	return r, err
}

// UpdateRequest applies fn atomically.
func (s *Store) UpdateRequest(ctx context.Context, id string, fn func(*storage.Request) error) (storage.Request, error) {
	var r storage.Request
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRequests)
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("boltstore: request %s: %w", id, storage.ErrNotFound)
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		return putJSON(b, []byte(id), r)
	})
	return r, err
}

// Requests returns all requests, oldest first.
func (s *Store) Requests(ctx context.Context) ([]storage.Request, error) {
	var out []storage.Request
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRequests).ForEach(func(k, v []byte) error {
			var r storage.Request
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// PutSession creates or replaces a session index entry.
func (s *Store) PutSession(ctx context.Context, sess storage.Session) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bSessions), []byte(sess.ID), sess)
	})
}

// Session returns one session.
func (s *Store) Session(ctx context.Context, id string) (storage.Session, error) {
	var sess storage.Session
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bSessions).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("boltstore: session %s: %w", id, storage.ErrNotFound)
		}
		return json.Unmarshal(v, &sess)
	})
	return sess, err
}

// Sessions lists sessions matching f, oldest first.
func (s *Store) Sessions(ctx context.Context, f storage.SessionFilter) ([]storage.Session, error) {
	var out []storage.Session
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bSessions).ForEach(func(k, v []byte) error {
			var sess storage.Session
			if err := json.Unmarshal(v, &sess); err != nil {
				return err
			}
			if f.Matches(sess) {
				out = append(out, sess)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, err
}

// GetKV returns a stored blob.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bKV).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("boltstore: %s: %w", key, storage.ErrNotFound)
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// PutKVIfAbsent stores v under key unless present, returning the stored value.
func (s *Store) PutKVIfAbsent(ctx context.Context, key string, v []byte) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bKV)
		if cur := b.Get([]byte(key)); cur != nil {
			out = append([]byte(nil), cur...)
			return nil
		}
		out = v
		return b.Put([]byte(key), v)
	})
	return out, err
}

// SerialHighWater returns the end of the last reserved serial block.
func (s *Store) SerialHighWater(ctx context.Context) (uint64, error) {
	var hi uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(kSerialHigh); v != nil {
			hi = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return hi, err
}

// SerialFloor makes every later serial greater than n.
func (s *Store) SerialFloor(ctx context.Context, n uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		cur := uint64(0)
		if v := m.Get(kSerialHigh); v != nil {
			cur = binary.BigEndian.Uint64(v)
		}
		if cur <= n {
			return m.Put(kSerialHigh, u64(n+1))
		}
		return nil
	})
	s.nextSerial, s.highSerial = 0, 0 // reserve a fresh block next time
	return err
}
