package forwarders

import (
	"context"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/audit"
)

// AuditQueue is a forwarder's one audit.Queue, shared by all its
// connections and started on first use: their events go to the audit log
// in group commits.
type AuditQueue struct {
	Audit    Auditor
	Interval time.Duration // 0: audit.DefaultCommitInterval

	once sync.Once
	q    *audit.Queue
}

// Get returns the queue, or nil once Close has been called.
func (a *AuditQueue) Get() *audit.Queue {
	a.once.Do(func() { a.q = audit.NewQueue(BatchEmitter(a.Audit), a.Interval) })
	return a.q
}

// Close writes what is queued and stops the queue; later Gets return nil.
func (a *AuditQueue) Close() {
	a.once.Do(func() {})
	if a.q != nil {
		a.q.Close()
	}
}

// BatchEmitter appends with EmitBatch where a can (an *audit.Log), else one
// Emit per event.
func BatchEmitter(a Auditor) audit.BatchEmitter {
	if b, ok := a.(audit.BatchEmitter); ok {
		return b
	}
	return emitEach{a}
}

type emitEach struct{ a Auditor }

func (e emitEach) EmitBatch(ctx context.Context, events []audit.Event) ([]audit.Event, error) {
	for i := range events {
		ev, err := e.a.Emit(ctx, events[i])
		if err != nil {
			return events[:i], err
		}
		events[i] = ev
	}
	return events, nil
}
