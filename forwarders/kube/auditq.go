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

// auditQueueLen bounds the kube.request events of one connection waiting
// for the audit log; a request whose event does not fit waits for room.
const auditQueueLen = 1024

// auditWriters bounds the goroutines of one connection writing events at
// once. The first starts with the first event; another starts while
// events queue up, so that a store coalescing concurrent writers
// (boltstore's Batch) commits several in one transaction. Within that
// window the order in the chain may differ from the order of the
// responses; each event carries its own time.
const auditWriters = 8

// auditQueue writes the kube.request events of one connection off the
// requests' critical path: a request's response goes out while its event
// is committed. It is owned by Serve, whose close flushes every queued
// event before the connection's Serve returns. The first failed write
// marks the connection failed (later requests get 503) and calls onFail,
// which closes the connection.
type auditQueue struct {
	ctx    context.Context // for the writes; not cancelled with the connection
	sink   Auditor
	log    *slog.Logger
	onFail func(error)

	mu      sync.RWMutex // senders hold it shared; close exclusively
	closed  bool
	ch      chan audit.Event
	writers atomic.Int32
	wg      sync.WaitGroup

	failed atomic.Pointer[error]
}

func newAuditQueue(ctx context.Context, sink Auditor, log *slog.Logger, onFail func(error)) *auditQueue {
	return &auditQueue{ctx: context.WithoutCancel(ctx), sink: sink, log: log, onFail: onFail, ch: make(chan audit.Event, auditQueueLen)}
}

// Err is the audit failure of the connection, or nil.
func (q *auditQueue) Err() error {
	if p := q.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// enqueue hands e to the writers. After close it writes e itself.
func (q *auditQueue) enqueue(e audit.Event) {
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		q.write(e)
		return
	}
	q.ch <- e
	if n := q.writers.Load(); n == 0 || (len(q.ch) > 1 && n < auditWriters) {
		if q.writers.Add(1) <= auditWriters {
			q.wg.Add(1)
			go func() {
				defer q.wg.Done()
				for e := range q.ch {
					q.write(e)
				}
			}()
		} else {
			q.writers.Add(-1)
		}
	}
	q.mu.RUnlock()
}

// writeNow commits e before it returns (upgraded requests: their event
// follows the exec session's own events in the log), with the same
// failure handling as the writers.
func (q *auditQueue) writeNow(e audit.Event) { q.write(e) }

// write commits one event; once the connection has failed it only logs
// what is lost.
func (q *auditQueue) write(e audit.Event) {
	if err := q.Err(); err != nil {
		q.log.Error("audit event lost: the audit log failed earlier on this connection", "type", e.Type, "details", e.Details)
		return
	}
	if _, err := q.sink.Emit(q.ctx, e); err != nil {
		err = fmt.Errorf("%w: %w", ErrAuditFailed, err)
		if q.failed.CompareAndSwap(nil, &err) {
			q.log.Error("audit write failed; closing the connection", "type", e.Type, "err", err)
			q.onFail(err)
		} else {
			q.log.Error("audit event lost", "type", e.Type, "details", e.Details, "err", err)
		}
	}
}

// close writes every queued event and waits for the writers. Events
// enqueued later are written synchronously.
func (q *auditQueue) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	q.wg.Wait()
}

// closingWriter asks for the connection to be closed after its response
// ("Connection: close"; HTTP/2 sends GOAWAY for it).
type closingWriter struct{ http.ResponseWriter }

func (w closingWriter) WriteHeader(code int) {
	w.Header().Set("Connection", "close")
	w.ResponseWriter.WriteHeader(code)
}
