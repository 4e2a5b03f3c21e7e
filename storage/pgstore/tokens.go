package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// tokenSweepEvery is how often MarkTokenUsed also deletes expired rows.
const tokenSweepEvery = time.Minute

// MarkTokenUsed records key (a hash of an ID token) until expires. fresh is
// false when another call, on any replica, recorded it and it has not
// expired. One statement decides, so concurrent callers get one fresh.
func (s *Store) MarkTokenUsed(ctx context.Context, key string, expires time.Time) (bool, error) {
	var one int
	err := s.pool.QueryRow(ctx, `INSERT INTO used_tokens (key, expires_at) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
		WHERE used_tokens.expires_at < now()
		RETURNING 1`, key, expires).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("pgstore: record used token: %w: %v", ErrUnavailable, err)
	}
	s.sweepTokens(ctx)
	return true, nil
}

// sweepTokens deletes expired rows at most once per tokenSweepEvery per
// replica; a failed sweep is retried next time and refuses nothing.
func (s *Store) sweepTokens(ctx context.Context) {
	s.tokenMu.Lock()
	due := time.Since(s.tokenSwept) >= tokenSweepEvery
	if due {
		s.tokenSwept = time.Now()
	}
	s.tokenMu.Unlock()
	if due {
		_, _ = s.pool.Exec(ctx, "DELETE FROM used_tokens WHERE expires_at < now()")
	}
}
