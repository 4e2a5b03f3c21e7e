package audit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Batch is a group of events handed to a Queue by one producer (a
// forwarder session): Events builds them in the Queue's writer goroutine,
// Done learns whether they became durable. Done is called exactly once.
type Batch interface {
	Events(dst []Event) []Event
	Done(err error)
}

// BatchEmitter appends events in one durable write (a *Log).
type BatchEmitter interface {
	EmitBatch(ctx context.Context, events []Event) ([]Event, error)
}

// ErrQueueClosed is given to batches put after Close.
var ErrQueueClosed = errors.New("audit: queue closed")

// DefaultCommitInterval is how long a Queue lets events gather between two
// commits.
const DefaultCommitInterval = 10 * time.Millisecond

// commitTimeout bounds one commit: a store that hangs (a PostgreSQL that
// stopped answering) fails the batches, which closes their sessions, rather
// than stalling every producer.
const commitTimeout = 30 * time.Second

// maxQueued bounds the batches waiting for a commit; Put blocks beyond it,
// so a store that stalls slows producers down rather than filling memory.
const maxQueued = 8192

// Queue appends the events of many producers in group commits: one
// writer goroutine takes everything queued, appends it in one durable write
// and tells each producer how its batch fared, then lets the next events
// gather for the commit interval. A statement that took 100 µs costs a
// hundredth of a commit instead of one. A producer's batches are appended
// in the order it put them.
type Queue struct {
	sink     BatchEmitter
	interval time.Duration
	timeout  time.Duration // of one commit

	mu      sync.Mutex
	pending []Batch
	wake    chan struct{} // one token: pending became non-empty
	space   *sync.Cond    // Put waits here while pending is full
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// NewQueue starts a queue over sink; interval 0 means
// DefaultCommitInterval. Close stops it.
func NewQueue(sink BatchEmitter, interval time.Duration) *Queue {
	return newQueue(sink, interval, commitTimeout)
}

func newQueue(sink BatchEmitter, interval, timeout time.Duration) *Queue {
	if interval <= 0 {
		interval = DefaultCommitInterval
	}
	q := &Queue{sink: sink, interval: interval, timeout: timeout, wake: make(chan struct{}, 1), done: make(chan struct{})}
	q.space = sync.NewCond(&q.mu)
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		q.run()
	}()
	return q
}

// Put queues b for the next commit. It blocks while the queue is full and
// returns ctx's error if ctx ends first (b.Done is then not called), or
// ErrQueueClosed after Close (b.Done neither).
func (q *Queue) Put(ctx context.Context, b Batch) error {
	q.mu.Lock()
	if len(q.pending) >= maxQueued && !q.closed {
		stop := context.AfterFunc(ctx, func() {
			q.mu.Lock()
			q.space.Broadcast()
			q.mu.Unlock()
		})
		for len(q.pending) >= maxQueued && !q.closed && ctx.Err() == nil {
			q.space.Wait()
		}
		stop()
	}
	switch {
	case q.closed:
		q.mu.Unlock()
		return ErrQueueClosed
	case ctx.Err() != nil:
		q.mu.Unlock()
		return ctx.Err()
	}
	q.pending = append(q.pending, b)
	first := len(q.pending) == 1
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Close writes what is queued and stops the writer.
func (q *Queue) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.done)
		q.space.Broadcast()
	}
	q.mu.Unlock()
	q.wg.Wait()
}

func (q *Queue) run() {
	var (
		taken  []Batch
		events []Event
	)
	ctx := context.Background()
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-q.wake:
		case <-q.done:
		}
		q.mu.Lock()
		taken, q.pending = q.pending, taken[:0]
		closed := q.closed
		q.space.Broadcast()
		q.mu.Unlock()
		if len(taken) == 0 {
			if closed {
				return
			}
			continue
		}
		events = events[:0]
		for _, b := range taken {
			events = b.Events(events)
		}
		var err error
		if len(events) > 0 {
			cctx, cancel := context.WithTimeout(ctx, q.timeout)
			_, err = q.sink.EmitBatch(cctx, events)
			cancel()
		}
		for _, b := range taken {
			b.Done(err)
		}
		clear(taken)
		clear(events)
		if closed {
			continue // take what came in meanwhile, then stop
		}
		// Let the next commit's events gather.
		timer.Reset(q.interval)
		select {
		case <-timer.C:
		case <-q.done:
			timer.Stop()
		}
	}
}

// pendingLen is for tests: how many batches wait for the writer.
func (q *Queue) pendingLen() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}
