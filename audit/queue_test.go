package audit

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/storage/boltstore"
)

// testBatch is n events of one producer; done receives Done's error.
type testBatch struct {
	producer, first, n int
	done               chan error
}

func (b *testBatch) Events(dst []Event) []Event {
	for i := 0; i < b.n; i++ {
		dst = append(dst, Event{Type: SQLQuery, User: fmt.Sprint(b.producer), Details: map[string]any{"i": b.first + i}})
	}
	return dst
}

func (b *testBatch) Done(err error) { b.done <- err }

// countingSink counts commits and can be made to fail.
type countingSink struct {
	BatchEmitter
	commits atomic.Int64
	fail    atomic.Bool
	block   chan struct{} // when set, each commit waits for a receive
}

func (c *countingSink) EmitBatch(ctx context.Context, events []Event) ([]Event, error) {
	if c.block != nil {
		<-c.block
	}
	c.commits.Add(1)
	if c.fail.Load() {
		return nil, fmt.Errorf("%w: disk full", ErrWrite)
	}
	return c.BatchEmitter.EmitBatch(ctx, events)
}

// testStore is a fresh bbolt store closed when the test ends.
func testStore(t testing.TB) *boltstore.Store {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitTaken waits until the writer has taken every queued batch.
func waitTaken(q *Queue) {
	for q.pendingLen() != 0 {
		time.Sleep(time.Millisecond)
	}
}

// TestQueueGroupCommitKeepsEachProducersOrder: eight producers putting 200
// batches each share commits (far fewer commits than batches), every batch
// learns it is durable, the chain verifies, and each producer's events
// are in the order it put them.
func TestQueueGroupCommitKeepsEachProducersOrder(t *testing.T) {
	s := testStore(t)
	sink := &countingSink{BatchEmitter: New(s, nil, nil)}
	q := NewQueue(sink, 5*time.Millisecond)
	const producers, batches, per = 8, 200, 3
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pending []*testBatch
			for i := 0; i < batches; i++ {
				b := &testBatch{producer: p, first: i * per, n: per, done: make(chan error, 1)}
				if err := q.Put(context.Background(), b); err != nil {
					t.Error(err)
					return
				}
				pending = append(pending, b)
			}
			for _, b := range pending {
				if err := <-b.done; err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	q.Close()
	ctx := context.Background()
	n, err := Verify(ctx, s)
	if err != nil || n != producers*batches*per {
		t.Fatalf("Verify = %d, %v; want %d events", n, err, producers*batches*per)
	}
	if c := sink.commits.Load(); c >= producers*batches/4 {
		t.Errorf("%d commits for %d batches: the queue does not group them", c, producers*batches)
	}
	evs, _, err := List(ctx, s, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	for _, e := range evs {
		i, _ := e.Details["i"].(interface{ Int64() (int64, error) }).Int64()
		if int(i) != next[e.User] {
			t.Fatalf("producer %s: event %d after %d", e.User, i, next[e.User]-1)
		}
		next[e.User]++
	}
}

// TestQueueFailedCommitTellsEveryBatch: a commit that fails reaches the
// Done of every batch it held; the next commit is tried afresh.
func TestQueueFailedCommitTellsEveryBatch(t *testing.T) {
	s := testStore(t)
	sink := &countingSink{BatchEmitter: New(s, nil, nil), block: make(chan struct{})}
	q := NewQueue(sink, time.Millisecond)
	defer q.Close()
	first := &testBatch{n: 1, done: make(chan error, 1)}
	if err := q.Put(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	waitTaken(q)
	// The writer is now inside the first commit (blocked); these two
	// gather for the next one, which fails.
	a := &testBatch{producer: 1, n: 2, done: make(chan error, 1)}
	b := &testBatch{producer: 2, n: 2, done: make(chan error, 1)}
	for _, x := range []*testBatch{a, b} {
		if err := q.Put(context.Background(), x); err != nil {
			t.Fatal(err)
		}
	}
	sink.block <- struct{}{}
	if err := <-first.done; err != nil {
		t.Fatal(err)
	}
	sink.fail.Store(true)
	sink.block <- struct{}{}
	for _, x := range []*testBatch{a, b} {
		if err := <-x.done; !errors.Is(err, ErrWrite) {
			t.Errorf("producer %d: Done(%v), want ErrWrite", x.producer, err)
		}
	}
	sink.fail.Store(false)
	c := &testBatch{producer: 3, n: 1, done: make(chan error, 1)}
	if err := q.Put(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	sink.block <- struct{}{}
	if err := <-c.done; err != nil {
		t.Fatalf("commit after a failed one: %v", err)
	}
	if n, err := Verify(context.Background(), s); err != nil || n != 2 {
		t.Fatalf("Verify = %d, %v; want the 2 events that were durable", n, err)
	}
}

// TestQueueCloseAndBackpressure: Close writes what is queued; Put after
// Close is refused; a full queue blocks Put until its context ends.
func TestQueueCloseAndBackpressure(t *testing.T) {
	s := testStore(t)
	sink := &countingSink{BatchEmitter: New(s, nil, nil), block: make(chan struct{})}
	q := NewQueue(sink, time.Hour)
	var queued []*testBatch
	for i := 0; i <= maxQueued; i++ { // one in the blocked commit, maxQueued waiting
		b := &testBatch{producer: i, n: 1, done: make(chan error, 1)}
		if err := q.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, b)
		if i == 0 {
			waitTaken(q)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Put(ctx, &testBatch{n: 1, done: make(chan error, 1)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put on a full queue = %v, want the context's error", err)
	}
	go func() {
		for range 2 {
			sink.block <- struct{}{}
		}
	}()
	q.Close() // does not wait the hour: Close commits at once
	for _, b := range queued {
		if err := <-b.done; err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Put(context.Background(), &testBatch{n: 1, done: make(chan error, 1)}); !errors.Is(err, ErrQueueClosed) {
		t.Fatalf("Put after Close = %v", err)
	}
	if n, err := Verify(context.Background(), s); err != nil || n != maxQueued+1 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

// hangingSink never answers until the commit's context ends, as a
// PostgreSQL that stopped responding.
type hangingSink struct{}

func (hangingSink) EmitBatch(ctx context.Context, events []Event) ([]Event, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("%w: %w", ErrWrite, ctx.Err())
}

// TestQueueCommitTimeout: a store that hangs fails the commit after the
// commit timeout; the batches learn it (their sessions close) instead of
// every producer stalling.
func TestQueueCommitTimeout(t *testing.T) {
	q := newQueue(hangingSink{}, time.Millisecond, 50*time.Millisecond)
	defer q.Close()
	b := &testBatch{n: 1, done: make(chan error, 1)}
	if err := q.Put(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := <-b.done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Done(%v), want the commit's deadline", err)
	}
}
