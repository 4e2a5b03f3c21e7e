package sshauth

import (
	"container/heap"
	"errors"
	"fmt"
	"sync"
	"time"
)

// NonceCache remembers the nonces of accepted requests until their
// timestamps fall outside the allowed skew, so a captured request cannot be
// replayed.
type NonceCache interface {
	// CheckAndStore records key until expires. It returns ErrReplay if key
	// is already recorded and not expired, and ErrNonceCacheFull if it
	// cannot record it; in both cases the request must be refused.
	CheckAndStore(key string, expires, now time.Time) error
}

// ErrNonceCacheFull means the replay cache is at capacity with entries that
// have not expired yet. The request is refused (fail closed); map it to 503.
var ErrNonceCacheFull = errors.New("sshauth: nonce cache full")

// DefaultNonceCacheSize is the capacity of the cache a Verifier creates when
// its Nonces field is nil.
const DefaultNonceCacheSize = 100_000

// MemoryNonceCache is an in-memory NonceCache bounded to a fixed number of
// entries. Expired entries are dropped as new ones arrive. It is safe for
// concurrent use. Replicas behind a load balancer each have their own, which
// is enough when the signed host is bound to one replica or sticky; a shared
// store is needed otherwise.
type MemoryNonceCache struct {
	max int

	mu      sync.Mutex
	expires map[string]time.Time
	order   expiryHeap
}

// NewMemoryNonceCache returns a cache holding at most max entries.
func NewMemoryNonceCache(max int) *MemoryNonceCache {
	if max <= 0 {
		max = DefaultNonceCacheSize
	}
	return &MemoryNonceCache{max: max, expires: make(map[string]time.Time)}
}

// CheckAndStore implements NonceCache.
func (c *MemoryNonceCache) CheckAndStore(key string, expires, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 && !c.order[0].expires.After(now) {
		e := heap.Pop(&c.order).(expiryEntry)
		if exp, ok := c.expires[e.key]; ok && exp.Equal(e.expires) {
			delete(c.expires, e.key)
		}
	}
	if exp, ok := c.expires[key]; ok && exp.After(now) {
		return fmt.Errorf("%w: nonce already used", ErrReplay)
	}
	if len(c.expires) >= c.max {
		return fmt.Errorf("%w: %d entries", ErrNonceCacheFull, len(c.expires))
	}
	c.expires[key] = expires
	heap.Push(&c.order, expiryEntry{key: key, expires: expires})
	return nil
}

// Len reports the number of live entries (for metrics and tests).
func (c *MemoryNonceCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.expires)
}

type expiryEntry struct {
	key     string
	expires time.Time
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
