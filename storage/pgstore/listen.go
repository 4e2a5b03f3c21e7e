package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// maxReconnectDelay caps the listener's back-off.
const maxReconnectDelay = 5 * time.Second

// listenerApp is the application_name of the listener's connection.
const listenerApp = "jumpgate-requests-listener"

// ListenRequests calls fn with the id of every request created or updated
// on any replica, as announced by CreateRequest and UpdateRequest when their
// transaction commits. It holds one dedicated connection (not from the pool)
// and blocks until ctx ends, then returns context.Cause(ctx); connection
// errors are logged and followed by a reconnect with back-off.
//
// Each time LISTEN is (re)established, the first time included, fn is
// called with the empty id: notifications sent while no connection
// listened are lost, so a waiter re-reads what it waits for. fn runs on the
// listener's goroutine and must not block for long.
func (s *Store) ListenRequests(ctx context.Context, fn func(id string)) error {
	delay := s.delay
	for {
		listened, err := s.listenOnce(ctx, fn)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if listened {
			// The connection worked before it broke: start the back-off over.
			delay = s.delay
		}
		s.logger.Warn("pgstore: requests listener lost its connection; reconnecting", "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		delay = min(2*delay, maxReconnectDelay)
	}
}

// listenOnce connects, listens and delivers notifications until an error,
// reporting whether LISTEN had been established.
func (s *Store) listenOnce(ctx context.Context, fn func(id string)) (listened bool, err error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = listenerApp
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("pgstore: listen: %w: %v", ErrUnavailable, err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+requestsChannel); err != nil {
		return false, fmt.Errorf("pgstore: listen: %w", err)
	}
	fn("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("pgstore: listen: %w", err)
		}
		if n.Channel == requestsChannel && n.Payload != "" {
			fn(n.Payload)
		}
	}
}
