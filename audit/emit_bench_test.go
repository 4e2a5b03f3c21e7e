package audit

import (
	"context"
	"testing"
	"time"
)

// BenchmarkEmitBatchBolt appends sql.query-like events to a bbolt store
// 100 at a time, as the forwarder's audit queue does: the cost of one
// durable event (encode, hash, B+tree put, share of a commit).
func BenchmarkEmitBatchBolt(b *testing.B) {
	l := New(testStore(b), nil, nil)
	ctx := context.Background()
	events := make([]Event, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(events) {
		for j := range events {
			events[j] = Event{Time: time.Now(), Type: SQLQuery, User: "dana@example.com", Target: "orders-db", Session: "s-0123456789", Source: "127.0.0.1:5555",
				Details: map[string]any{"protocol": "simple", "kinds": []string{"select"}, "statement": int64(i + j), "duration_ms": 0.123, "rows": int64(1), "tag": "SELECT 1",
					"fingerprint": "a1b2c3d4e5f6a7b8", "text": "SELECT abalance FROM pgbench_accounts WHERE aid = $1"}}
		}
		if _, err := l.EmitBatch(ctx, events); err != nil {
			b.Fatal(err)
		}
	}
}
