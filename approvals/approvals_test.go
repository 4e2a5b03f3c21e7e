package approvals

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/storage/boltstore"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newQueue(t *testing.T) (*Queue, *clock, *boltstore.Store) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Parse([]byte("requests: {approvers: [{groups: [leads]}], max_duration: 4h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	return &Queue{Store: st, Audit: audit.New(st, c.Now, nil), Policy: policy.Static(pol), Clock: c.Now, Poll: 10 * time.Millisecond}, c, st
}

var (
	alice = policy.Identity{User: "alice", Groups: []string{"eng"}}
	dave  = policy.Identity{User: "dave", Groups: []string{"leads"}}
	erin  = policy.Identity{User: "erin", Groups: []string{"leads"}}
)

func TestApproveReleasesWaiter(t *testing.T) {
	q, _, st := newQueue(t)
	ctx := context.Background()
	r, err := q.Create(ctx, storage.Request{Kind: storage.KindCommand, User: "alice", Target: "web-1", What: "sudo ls"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan storage.Request, 1)
	go func() {
		r, _ := q.Wait(ctx, r.ID)
		got <- r
	}()
	if _, err := q.Decide(ctx, r.ID, alice, true, ""); !errors.Is(err, ErrOwnRequest) {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := q.Decide(ctx, r.ID, policy.Identity{User: "bob", Groups: []string{"eng"}}, true, ""); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("non-approver: %v", err)
	}
	if _, err := q.Decide(ctx, r.ID, dave, true, "ok"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.Status != storage.StatusApproved || r.DecidedBy != "dave" {
			t.Fatalf("waiter got %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not released")
	}
	if _, err := q.Decide(ctx, r.ID, erin, false, "no"); !errors.Is(err, ErrDecided) {
		t.Fatalf("second decision: %v", err)
	}
	evs, _, _ := audit.List(ctx, st, audit.Filter{})
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	want := []string{audit.CommandHeld, audit.RequestCreated, audit.RequestApproved}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
}

func TestUndecidedRequestExpires(t *testing.T) {
	q, c, _ := newQueue(t)
	ctx := context.Background()
	r, _ := q.Create(ctx, storage.Request{Kind: storage.KindSQL, User: "alice", What: "DROP TABLE x"}, time.Minute)
	c.Add(2 * time.Minute)
	got, err := q.Wait(ctx, r.ID)
	if err != nil || got.Status != storage.StatusExpired {
		t.Fatalf("wait after timeout: %+v %v", got, err)
	}
	if _, err := q.Decide(ctx, r.ID, dave, true, ""); !errors.Is(err, ErrDecided) {
		t.Fatalf("approving an expired request: %v", err)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	q, _, _ := newQueue(t)
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := q.Create(ctx, storage.Request{Kind: storage.KindCommand, User: "alice"}, time.Hour)
	cancel()
	if _, err := q.Wait(ctx, r.ID); err == nil {
		t.Fatal("Wait returned no error after cancel")
	}
}

func TestAccessGrants(t *testing.T) {
	q, c, _ := newQueue(t)
	ctx := context.Background()
	if _, err := q.Create(ctx, storage.Request{Kind: storage.KindAccess, User: "alice", Target: "prod", Duration: 5 * time.Hour}, time.Hour); !errors.Is(err, ErrTooLong) {
		t.Fatalf("over max_duration: %v", err)
	}
	r, _ := q.Create(ctx, storage.Request{Kind: storage.KindAccess, User: "alice", Target: "prod", Duration: time.Hour}, time.Hour)
	if g, _ := q.Grants(ctx, "alice"); len(g) != 0 {
		t.Fatalf("grant before approval: %v", g)
	}
	q.Decide(ctx, r.ID, dave, true, "")
	g, _ := q.Grants(ctx, "alice")
	if len(g) != 1 || g[0].Target != "prod" || !g[0].Until.Equal(c.Now().Add(time.Hour)) {
		t.Fatalf("grants %v", g)
	}
	c.Add(time.Hour)
	if g, _ := q.Grants(ctx, "alice"); len(g) != 0 {
		t.Fatalf("grant after the window: %v", g)
	}
	ended, _ := q.Ended(ctx)
	if len(ended) != 1 {
		t.Fatalf("ended %v", ended)
	}
	if lapsed, _ := q.Lapsed(ctx, 2*time.Hour); len(lapsed) != 1 {
		t.Fatalf("lapsed %v", lapsed)
	}
	if won, err := q.ClaimClose(ctx, r.ID); !won || err != nil {
		t.Fatalf("first claim: %v %v", won, err)
	}
	if won, err := q.ClaimClose(ctx, r.ID); won || err != nil {
		t.Fatalf("second claim: %v %v", won, err)
	}
	if ended, _ := q.Ended(ctx); len(ended) != 0 {
		t.Fatalf("closed window listed again: %v", ended)
	}
	if lapsed, _ := q.Lapsed(ctx, 2*time.Hour); len(lapsed) != 1 || lapsed[0].ClosedAt.IsZero() {
		t.Fatalf("a closed window is still lapsed (replicas end their own sessions): %v", lapsed)
	}
	c.Add(2 * time.Minute)
	if lapsed, _ := q.Lapsed(ctx, time.Minute); len(lapsed) != 0 {
		t.Fatalf("lapsed long ago: %v", lapsed)
	}
}
