package audit

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jumpgate/jumpgate/storage"
)

func TestChainConcurrentAndVerify(t *testing.T) {
	s := testStore(t)
	l := New(s, nil, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := l.Emit(ctx, Event{Type: CertIssued, User: "alice", Details: map[string]any{"serial": uint64(1) << 60, "i": i}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	n, err := Verify(ctx, s)
	if err != nil || n != 200 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	evs, _, err := List(ctx, s, Filter{User: "alice", Type: "cert."})
	if err != nil || len(evs) != 200 {
		t.Fatalf("List = %d %v", len(evs), err)
	}
}

// TestEmitBatchInterleaved: batches and single events from several
// goroutines make one chain; a batch's events are consecutive and in order.
func TestEmitBatchInterleaved(t *testing.T) {
	s := testStore(t)
	l := New(s, nil, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				evs := []Event{{Type: SQLQuery, User: "alice", Details: map[string]any{"i": 0}}, {Type: SQLQuery, User: "alice", Details: map[string]any{"i": 1}}, {Type: SQLQuery, User: "alice", Details: map[string]any{"i": 2}}}
				out, err := l.EmitBatch(ctx, evs)
				if err != nil {
					t.Error(err)
					return
				}
				for j := 1; j < len(out); j++ {
					if out[j].Seq != out[j-1].Seq+1 || out[j].PrevHash != out[j-1].Hash {
						t.Errorf("batch not consecutive: %d after %d", out[j].Seq, out[j-1].Seq)
					}
				}
				if _, err := l.Emit(ctx, Event{Type: CertIssued, User: "bob"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n, err := Verify(ctx, s); err != nil || n != 4*20*4 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	if _, err := l.EmitBatch(ctx, []Event{{Type: SQLQuery}, {}}); !errors.Is(err, ErrWrite) {
		t.Fatalf("a batch with an untyped event: %v", err)
	}
	if n, err := Verify(ctx, s); err != nil || n != 4*20*4 {
		t.Fatalf("a refused batch left records: %d, %v", n, err)
	}
}

// tamperStore returns stored records with one modified, as an attacker with
// write access to the store would.
type tamperStore struct {
	Store
	mutate func([]storage.AuditRecord)
}

func (t tamperStore) AuditRange(ctx context.Context, from uint64, limit int) ([]storage.AuditRecord, error) {
	r, err := t.Store.AuditRange(ctx, from, limit)
	t.mutate(r)
	return r, err
}

func TestVerifyDetectsTampering(t *testing.T) {
	s := testStore(t)
	l := New(s, nil, nil)
	for i := 0; i < 5; i++ {
		if _, err := l.Emit(context.Background(), Event{Type: Exec, User: "bob", Details: map[string]any{"command": "ls"}}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		mutate func([]storage.AuditRecord)
	}{
		{"edited detail", func(r []storage.AuditRecord) {
			r[2].JSON = []byte(string(r[2].JSON[:0]) + replace(string(r[2].JSON), `"ls"`, `"rm"`))
		}},
		{"deleted event", func(r []storage.AuditRecord) { copy(r[2:], r[3:]); r[4] = r[3] }},
		{"reordered", func(r []storage.AuditRecord) { r[1], r[2] = r[2], r[1] }},
		{"rehashed edit", func(r []storage.AuditRecord) {
			e, _ := CheckLine(r[2].JSON)
			e.User = "mallory"
			line, h, _ := Seal(&e)
			r[2].JSON, r[2].Hash = line, h
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(context.Background(), tamperStore{s, tc.mutate}); !errors.Is(err, ErrBroken) {
				t.Fatalf("Verify = %v, want ErrBroken", err)
			}
		})
	}
}

func replace(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

func FuzzCheckLine(f *testing.F) {
	e := Event{ID: "x", Seq: 1, Type: "exec", Details: map[string]any{"a": 1}}
	line, _, _ := Seal(&e)
	f.Add(line)
	f.Add([]byte(`{"hash":"00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = CheckLine(b)
	})
}
