package identity

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// memLedger stands in for the shared store (storage/pgstore implements it
// against PostgreSQL and is tested there and end to end).
type memLedger struct {
	mu   sync.Mutex
	used map[string]bool
	err  error
}

func (l *memLedger) MarkTokenUsed(_ context.Context, key string, _ time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return false, l.err
	}
	if l.used[key] {
		return false, nil
	}
	l.used[key] = true
	return true, nil
}

func TestMarkUsed(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(5 * time.Minute)
	t.Run("one process", func(t *testing.T) {
		v, _ := New(nil)
		if err := v.MarkUsed(ctx, "tok", exp); err != nil {
			t.Fatal(err)
		}
		if err := v.MarkUsed(ctx, "tok", exp); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay: %v", err)
		}
	})
	t.Run("shared by replicas", func(t *testing.T) {
		l := &memLedger{used: map[string]bool{}}
		a, _ := New(nil)
		b, _ := New(nil)
		a.ShareUsed(l)
		b.ShareUsed(l)
		if err := a.MarkUsed(ctx, "tok", exp); err != nil {
			t.Fatal(err)
		}
		if err := b.MarkUsed(ctx, "tok", exp); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay at another replica: %v", err)
		}
		if err := b.MarkUsed(ctx, "tok", exp); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay again: %v", err)
		}
		if l.used["tok"] {
			t.Fatal("the ledger holds the token itself, not its hash")
		}
	})
	t.Run("ledger down fails closed", func(t *testing.T) {
		l := &memLedger{used: map[string]bool{}, err: errors.New("connection refused")}
		v, _ := New(nil)
		v.ShareUsed(l)
		if err := v.MarkUsed(ctx, "tok", exp); !errors.Is(err, ErrLedger) {
			t.Fatalf("ledger down: %v", err)
		}
		l.err = nil // back: the token was never accepted, so it still can be
		if err := v.MarkUsed(ctx, "tok", exp); err != nil {
			t.Fatalf("after the ledger is back: %v", err)
		}
	})
}
