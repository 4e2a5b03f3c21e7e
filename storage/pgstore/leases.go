package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Heartbeat creates or renews the lease of replica for ttl, by the
// database's clock (replicas' clocks need not agree).
func (s *Store) Heartbeat(ctx context.Context, replica string, ttl time.Duration) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO replica_leases (name, expires_at) VALUES ($1, now() + $2::interval)
		ON CONFLICT (name) DO UPDATE SET expires_at = EXCLUDED.expires_at`, replica, ttl.String())
	if err != nil {
		return fmt.Errorf("pgstore: heartbeat %s: %w", replica, err)
	}
	return nil
}

// ClaimExpiredReplicas returns the replicas whose lease expired and extends
// each lease by hold in one statement, so of several replicas sweeping at
// once exactly one gets each dead replica (and if that one dies too, the
// lease expires again and another takes over).
func (s *Store) ClaimExpiredReplicas(ctx context.Context, hold time.Duration) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `UPDATE replica_leases SET expires_at = now() + $1::interval
		WHERE expires_at < now() RETURNING name`, hold.String())
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: expired replicas: %w", err)
	}
	return names, nil
}

// DropLease deletes the lease of replica (swept, or shut down cleanly).
func (s *Store) DropLease(ctx context.Context, replica string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM replica_leases WHERE name = $1", replica); err != nil {
		return fmt.Errorf("pgstore: drop lease %s: %w", replica, err)
	}
	return nil
}

// ClaimSession atomically moves session id from status from to status to in
// the indexed column and reports whether this caller made the change; the
// caller then stores the full record. Two replicas recovering the same
// session never both end it.
func (s *Store) ClaimSession(ctx context.Context, id, from, to string) (bool, error) {
	tag, err := s.pool.Exec(ctx, "UPDATE sessions SET status = $3 WHERE id = $1 AND status = $2", id, from, to)
	if err != nil {
		return false, fmt.Errorf("pgstore: claim session %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}
