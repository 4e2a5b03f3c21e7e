package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/jumpgate/jumpgate/audit"
)

// ErrAuditFailed is the cause a connection ends with when its audit
// events cannot be written.
var ErrAuditFailed = errors.New("kube: the audit log cannot be written")

// auditQueue writes the kube.request events of one connection off the
// requests' critical path, through the forwarder's shared audit.Queue: a
// request's response goes out while its event gathers with every other
// connection's for the next group commit. It is owned by Serve, whose close
// waits until every queued event is durable before the connection's Serve
// returns. The first failed write marks the connection failed (later
// requests get 503) and calls onFail, which closes the connection.
type auditQueue struct {
	ctx    context.Context // for the writes; not cancelled with the connection
	shared *audit.Queue    // nil: the forwarder is closed
	sink   Auditor
	log    *slog.Logger
	onFail func(error)

	mu     sync.RWMutex // senders hold it shared; close exclusively
	closed bool
	queued sync.WaitGroup // events in the shared queue

	failed atomic.Pointer[error]
}

func newAuditQueue(ctx context.Context, shared *audit.Queue, sink Auditor, log *slog.Logger, onFail func(error)) *auditQueue {
	return &auditQueue{ctx: context.WithoutCancel(ctx), shared: shared, sink: sink, log: log, onFail: onFail}
}

// Err is the audit failure of the connection, or nil.
func (q *auditQueue) Err() error {
	if p := q.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// queuedEvent is one event in the shared queue.
type queuedEvent struct {
	q *auditQueue
	e audit.Event
}

func (b *queuedEvent) Events(dst []audit.Event) []audit.Event { return append(dst, b.e) }

func (b *queuedEvent) Done(err error) {
	if err != nil {
		b.q.fail(b.e, err)
	}
	b.q.queued.Done()
}

// enqueue hands e to the shared queue. After close it writes e itself.
func (q *auditQueue) enqueue(e audit.Event) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed || q.shared == nil {
		q.write(e)
		return
	}
	if q.Err() != nil {
		q.lost(e, nil)
		return
	}
	q.queued.Add(1)
	if err := q.shared.Put(q.ctx, &queuedEvent{q: q, e: e}); err != nil {
		q.queued.Done()
		q.write(e) // the queue closed under us: commit it here
	}
}

// writeNow commits e before it returns (upgraded requests: their event
// follows the exec session's own events in the log), with the same
// failure handling as the queue.
func (q *auditQueue) writeNow(e audit.Event) { q.write(e) }

// write commits one event; once the connection has failed it only logs
// what is lost.
func (q *auditQueue) write(e audit.Event) {
	if q.Err() != nil {
		q.lost(e, nil)
		return
	}
	if _, err := q.sink.Emit(q.ctx, e); err != nil {
		q.fail(e, err)
	}
}

// fail marks the connection failed on its first failed write.
func (q *auditQueue) fail(e audit.Event, err error) {
	err = fmt.Errorf("%w: %w", ErrAuditFailed, err)
	q.lost(e, err)
	if q.failed.CompareAndSwap(nil, &err) {
		q.log.Error("audit write failed; closing the connection", "err", err)
		q.onFail(err)
	}
}

func (q *auditQueue) lost(e audit.Event, err error) {
	if err == nil {
		err = q.Err()
	}
	q.log.Error("audit event lost: the audit log failed on this connection", "type", e.Type, "details", e.Details, "err", err)
}

// close waits until every queued event is durable (or failed). Events
// enqueued later are written synchronously.
func (q *auditQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.queued.Wait()
}

// closingWriter asks for the connection to be closed after its response
// ("Connection: close"; HTTP/2 sends GOAWAY for it).
type closingWriter struct{ http.ResponseWriter }

func (w closingWriter) WriteHeader(code int) {
	w.Header().Set("Connection", "close")
	w.ResponseWriter.WriteHeader(code)
}
