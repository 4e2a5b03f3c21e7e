package ca

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/storage"
)

// RevocationStore is the slice of storage revocations need.
type RevocationStore interface {
	AddRevocation(ctx context.Context, r storage.Revocation) error
	Revocations(ctx context.Context) ([]storage.Revocation, error)
}

// Revocations is the in-memory revocation set, refreshed from storage so a
// revocation made on any replica is enforced on every one.
type Revocations struct {
	store RevocationStore

	mu      sync.RWMutex
	serials map[uint64]bool
	keyIDs  map[string]bool
	list    []storage.Revocation
}

// NewRevocations loads the set from store.
func NewRevocations(ctx context.Context, store RevocationStore) (*Revocations, error) {
	r := &Revocations{store: store}
	if err := r.Refresh(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Refresh reloads the set from storage.
func (r *Revocations) Refresh(ctx context.Context) error {
	list, err := r.store.Revocations(ctx)
	if err != nil {
		return fmt.Errorf("ca: load revocations: %w", err)
	}
	serials := make(map[uint64]bool, len(list))
	keyIDs := make(map[string]bool)
	for _, v := range list {
		if v.Serial != 0 {
			serials[v.Serial] = true
		}
		if v.KeyID != "" {
			keyIDs[v.KeyID] = true
		}
	}
	r.mu.Lock()
	r.serials, r.keyIDs, r.list = serials, keyIDs, list
	r.mu.Unlock()
	return nil
}

// Run refreshes every interval until ctx ends.
func (r *Revocations) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Refresh(ctx); err != nil && onErr != nil && ctx.Err() == nil {
				onErr(err)
			}
		}
	}
}

// Revoke stores a revocation and applies it at once.
func (r *Revocations) Revoke(ctx context.Context, v storage.Revocation) error {
	if v.Serial == 0 && v.KeyID == "" {
		return fmt.Errorf("%w: revoke needs a serial or a key id", ErrInvalidRequest)
	}
	if err := r.store.AddRevocation(ctx, v); err != nil {
		return fmt.Errorf("ca: revoke: %w", err)
	}
	return r.Refresh(ctx)
}

// IsRevoked reports whether cert's serial or exact key id is revoked.
func (r *Revocations) IsRevoked(cert *ssh.Certificate) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.serials[cert.Serial] || r.keyIDs[cert.KeyId]
}

// List returns the current revocations.
func (r *Revocations) List() []storage.Revocation {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]storage.Revocation(nil), r.list...)
}
