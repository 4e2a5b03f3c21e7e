package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter keeps one token bucket per key, forgetting idle keys so an
// attacker spraying keys cannot grow it without bound.
type limiter struct {
	perMinute int
	burst     int
	clock     func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

const maxBuckets = 100_000

func newLimiter(perMinute, burst int, clock func() time.Time) *limiter {
	if clock == nil {
		clock = time.Now
	}
	return &limiter{perMinute: perMinute, burst: burst, clock: clock, buckets: map[string]*bucket{}}
}

// allow takes one token for key.
func (l *limiter) allow(key string) bool {
	if l == nil || l.perMinute <= 0 {
		return true
	}
	now := l.clock()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			for k, v := range l.buckets {
				if now.Sub(v.seen) > 10*time.Minute {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxBuckets {
				return false
			}
		}
		b = &bucket{l: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	return b.l.AllowN(now, 1)
}
