package pgstore

import (
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/storage"
)

// TestLeasesAndClaims: a replica whose lease lapsed is claimed by exactly
// one of two sweeping replicas, a live one never; a running session is
// claimed (moved to interrupted) once.
func TestLeasesAndClaims(t *testing.T) {
	_, _, stores := replicas(t, 2)
	a, b := stores[0], stores[1]
	ctx := ctxT(t)
	if err := a.Heartbeat(ctx, "live", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Heartbeat(ctx, "dead", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		ga, err := a.ClaimExpiredReplicas(ctx, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		gb, err := b.ClaimExpiredReplicas(ctx, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		got = append(ga, gb...)
	}
	if len(got) != 1 || got[0] != "dead" {
		t.Fatalf("claimed %v, want [dead] once", got)
	}
	if again, _ := b.ClaimExpiredReplicas(ctx, time.Hour); len(again) != 0 {
		t.Fatalf("claimed again while the claim holds: %v", again)
	}
	if err := a.DropLease(ctx, "dead"); err != nil {
		t.Fatal(err)
	}

	s := storage.Session{ID: "s1", User: "u", Target: "t", Status: storage.SessionRunning, Start: time.Now().UTC(), Replica: "dead"}
	if err := a.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	wonA, err := a.ClaimSession(ctx, "s1", storage.SessionRunning, storage.SessionInterrupted)
	if err != nil {
		t.Fatal(err)
	}
	wonB, err := b.ClaimSession(ctx, "s1", storage.SessionRunning, storage.SessionInterrupted)
	if err != nil {
		t.Fatal(err)
	}
	if !wonA || wonB {
		t.Fatalf("claims: a=%v b=%v, want exactly the first", wonA, wonB)
	}
}
