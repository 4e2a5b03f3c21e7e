package pgstore

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTokenUsedOnceAcrossReplicas: two stores on one database (two
// replicas), many callers with the same token key: exactly one is fresh;
// an expired record can be taken again; a different key is independent.
func TestTokenUsedOnceAcrossReplicas(t *testing.T) {
	_, _, stores := replicas(t, 2)
	ctx := ctxT(t)
	exp := time.Now().Add(10 * time.Minute)
	var fresh atomic.Int64
	var wg sync.WaitGroup
	for _, s := range stores {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.MarkTokenUsed(ctx, "k-same", exp)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					fresh.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if n := fresh.Load(); n != 1 {
		t.Fatalf("%d callers got the same token fresh, want 1", n)
	}
	if ok, err := stores[1].MarkTokenUsed(ctx, "k-other", exp); err != nil || !ok {
		t.Fatalf("another token: %v %v", ok, err)
	}
	// A record whose token has expired no longer refuses (the key of an
	// expired token can only come back if the IdP reissued the same bytes).
	if ok, err := stores[0].MarkTokenUsed(ctx, "k-old", time.Now().Add(-time.Second)); err != nil || !ok {
		t.Fatalf("first expired: %v %v", ok, err)
	}
	if ok, err := stores[1].MarkTokenUsed(ctx, "k-old", exp); err != nil || !ok {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
	if ok, err := stores[0].MarkTokenUsed(ctx, "k-old", exp); err != nil || ok {
		t.Fatalf("replayed after re-record: %v %v", ok, err)
	}
}
