package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"sync/atomic"
	"time"
)

// Store holds the current policy and swaps it atomically on reload.
type Store struct {
	cur  atomic.Pointer[Policy]
	file string
	sum  [32]byte
}

// NewStore loads file; an invalid file is an error.
func NewStore(file string) (*Store, error) {
	s := &Store{file: file}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p, err := Parse(b)
	if err != nil {
		return nil, err
	}
	s.cur.Store(p)
	s.sum = sha256.Sum256(b)
	return s, nil
}

// Static returns a store holding p (tests, dev).
func Static(p *Policy) *Store {
	s := &Store{}
	s.cur.Store(p)
	return s
}

// Current returns the policy in force.
func (s *Store) Current() *Policy { return s.cur.Load() }

// Reload re-reads the file. It reports changed=false when the content is
// the same; an invalid file leaves the current policy in force and returns
// the error.
func (s *Store) Reload() (changed bool, err error) {
	if s.file == "" {
		return false, nil
	}
	b, err := os.ReadFile(s.file)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(b)
	if bytes.Equal(sum[:], s.sum[:]) {
		return false, nil
	}
	p, err := Parse(b)
	if err != nil {
		s.sum = sum // report a broken file once, not every poll
		return false, err
	}
	s.cur.Store(p)
	s.sum = sum
	return true, nil
}

// Watch polls the file every interval (well inside the 5 s promise) and
// calls report after each reload attempt that changed something or failed.
func (s *Store) Watch(ctx context.Context, interval time.Duration, report func(changed bool, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := s.Reload()
			if (changed || err != nil) && report != nil {
				report(changed, err)
			}
		}
	}
}
