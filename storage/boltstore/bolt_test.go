package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/jumpgate/jumpgate/storage"
)

func TestSerialsUniqueAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	seen := map[uint64]bool{}
	for round := 0; round < 3; round++ {
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					n, err := s.NextSerial(context.Background())
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[n] {
						t.Errorf("serial %d issued twice", n)
					}
					seen[n] = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		s.Close()
	}
}

func TestLockedAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second open = %v, want ErrLocked", err)
	}
	s.Close()

	bad := filepath.Join(dir, "bad.db")
	garbage := []byte("this is not a bolt database, and it must stay exactly like this")
	if err := os.WriteFile(bad, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("open garbage = %v, want ErrCorrupt", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != string(garbage) {
		t.Fatal("corrupt file was modified")
	}
}

func TestRequestsSessionsKV(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	r := storage.Request{ID: "r1", Kind: storage.KindCommand, User: "alice", Status: storage.StatusPending}
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRequest(ctx, r); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("duplicate create = %v", err)
	}
	got, err := s.UpdateRequest(ctx, "r1", func(r *storage.Request) error { r.Status = storage.StatusApproved; return nil })
	if err != nil || got.Status != storage.StatusApproved {
		t.Fatalf("update = %v %v", got, err)
	}
	if _, err := s.Request(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing = %v", err)
	}
	if err := s.PutSession(ctx, storage.Session{ID: "s1", User: "alice", Status: storage.SessionRunning}); err != nil {
		t.Fatal(err)
	}
	ss, err := s.Sessions(ctx, storage.SessionFilter{User: "alice"})
	if err != nil || len(ss) != 1 {
		t.Fatalf("sessions = %v %v", ss, err)
	}
	v, err := s.PutKVIfAbsent(ctx, "k", []byte("one"))
	if err != nil || string(v) != "one" {
		t.Fatal(v, err)
	}
	v, err = s.PutKVIfAbsent(ctx, "k", []byte("two"))
	if err != nil || string(v) != "one" {
		t.Fatalf("PutKVIfAbsent overwrote: %q %v", v, err)
	}
	if err := s.PutCert(ctx, storage.CertRecord{Serial: 7, KeyID: "alice/7", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCert(ctx, storage.CertRecord{Serial: 8, KeyID: "alice/7x", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.CertsByKeyID(ctx, "alice/7")
	if err != nil || len(cs) != 1 || cs[0].Serial != 7 {
		t.Fatalf("CertsByKeyID exact match = %v %v", cs, err)
	}
}

// TestOpenRefusesDamagedFiles: empty, truncated and overwritten stores are
// refused with ErrCorrupt and left byte-for-byte as they were.
func TestOpenRefusesDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := Open(good)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := s.PutKVIfAbsent(context.Background(), fmt.Sprintf("k%d", i), bytes.Repeat([]byte("v"), 1000)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := readMeta(orig)
	if !ok {
		t.Fatal("no meta page")
	}
	used := int(m.pgid) * int(m.pageSize)
	for name, data := range map[string][]byte{
		"empty":          {},
		"first page":     orig[:100],
		"half":           orig[:len(orig)/2],
		"one page short": orig[:used-int(m.pageSize)],
		"zeroed metas":   append(make([]byte, 8192), orig[8192:]...),
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".db")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if st, err := Open(p); !errors.Is(err, storage.ErrCorrupt) {
				if err == nil {
					st.Close()
				}
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if b, _ := os.ReadFile(p); !bytes.Equal(b, data) {
				t.Fatal("the damaged file was modified")
			}
		})
	}
}

// TestAuditReadsBothValueFormats: records stored before the value became
// the line itself ({"hash","event"}) are read back next to new ones, the
// chain goes on from the old tip, and a value of neither form is corrupt.
func TestAuditReadsBothValueFormats(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	line := func(seq uint64, prev string) ([]byte, string) {
		h := fmt.Sprintf("%064x", seq*7)
		return []byte(fmt.Sprintf(`{"id":"e%d","seq":%d,"prev_hash":%q,"hash":"%s"}`, seq, seq, prev, h)), h
	}
	// Two records the way earlier releases wrote them.
	old1, h1 := line(1, "")
	old2, h2 := line(2, h1)
	err = s.db.Update(func(tx *bolt.Tx) error {
		for i, l := range [][]byte{old1, old2} {
			if err := putJSON(tx.Bucket(bAudit), u64(uint64(i+1)), auditValue{Hash: []string{h1, h2}[i], JSON: l}); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bMeta), kAuditTip, auditTip{Seq: 2, Hash: h2})
	})
	if err != nil {
		t.Fatal(err)
	}
	var gotPrev string
	rec, err := s.AppendAudit(context.Background(), func(seq uint64, prev string) ([]byte, string, error) {
		gotPrev = prev
		l, h := line(seq, prev)
		return l, h, nil
	})
	if err != nil || rec.Seq != 3 || gotPrev != h2 {
		t.Fatalf("append after old records: seq %d prev %q err %v", rec.Seq, gotPrev, err)
	}
	recs, err := s.AuditRange(context.Background(), 1, 0)
	if err != nil || len(recs) != 3 {
		t.Fatalf("AuditRange = %d records, %v", len(recs), err)
	}
	for i, want := range [][]byte{old1, old2, rec.JSON} {
		if !bytes.Equal(recs[i].JSON, want) || recs[i].Seq != uint64(i+1) || recs[i].Hash != fmt.Sprintf("%064x", (i+1)*7) {
			t.Errorf("record %d = %d %s %s", i+1, recs[i].Seq, recs[i].Hash, recs[i].JSON)
		}
	}
	// A builder whose line does not end with its hash is refused.
	if _, err := s.AppendAudit(context.Background(), func(seq uint64, prev string) ([]byte, string, error) {
		return []byte(`{"id":"x"}`), fmt.Sprintf("%064x", 1), nil
	}); err == nil {
		t.Error("a line without its trailing hash was stored")
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bAudit).Put(u64(4), []byte(`{"id":"no hash"}`)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuditRange(context.Background(), 4, 0); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("AuditRange over a damaged value = %v, want ErrCorrupt", err)
	}
}
