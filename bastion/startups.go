package bastion

import (
	"errors"
	"sync"
)

var (
	errTooManyStartups   = errors.New("bastion: too many unauthenticated connections")
	errTooManyFromSource = errors.New("bastion: too many unauthenticated connections from one address")
)

// startups counts connections that have not authenticated yet, in all and
// per source address, like sshd's MaxStartups and PerSourceMaxStartups.
type startups struct {
	mu    sync.Mutex
	total int
	by    map[string]int
}

// begin takes a slot for a new connection from ip, or says which limit
// refuses it.
func (s *startups) begin(ip string, max, perSource int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= max {
		return errTooManyStartups
	}
	if s.by[ip] >= perSource {
		return errTooManyFromSource
	}
	if s.by == nil {
		s.by = map[string]int{}
	}
	s.total++
	s.by[ip]++
	return nil
}

// end gives back the slot of a connection from ip that authenticated or
// closed.
func (s *startups) end(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.by[ip] <= 1 {
		delete(s.by, ip)
	} else {
		s.by[ip]--
	}
}
