package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// maxReconnectDelay caps the listener's back-off.
const maxReconnectDelay = 5 * time.Second

// listenerApp prefixes the application_name of a listener's connection.
const listenerApp = "jumpgate-listener"

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
	return s.listen(ctx, requestsChannel, fn)
}

// terminateChannel carries requests to end a running session, for the
// replica that runs it.
const terminateChannel = "jumpgate_terminate"

// RequestTermination asks the replica running session to end it (its
// ListenTerminations callback); by names who asked.
func (s *Store) RequestTermination(ctx context.Context, session, by string) error {
	b, err := json.Marshal(termination{Session: session, By: by})
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	if _, err := s.pool.Exec(ctx, "SELECT pg_notify($1, $2)", terminateChannel, string(b)); err != nil {
		return fmt.Errorf("pgstore: request termination: %w: %v", ErrUnavailable, err)
	}
	return nil
}

type termination struct {
	Session string `json:"session"`
	By      string `json:"by"`
}

// ListenTerminations calls fn for every RequestTermination on any replica,
// like ListenRequests (its own connection, reconnects, blocks until ctx
// ends). A request sent while the connection is down is not redelivered:
// the caller of RequestTermination is told the request was sent, not done.
func (s *Store) ListenTerminations(ctx context.Context, fn func(session, by string)) error {
	return s.listen(ctx, terminateChannel, func(payload string) {
		var t termination
		if payload == "" || json.Unmarshal([]byte(payload), &t) != nil || t.Session == "" {
			return
		}
		fn(t.Session, t.By)
	})
}

// listen delivers channel's payloads to fn, reconnecting with back-off;
// fn gets "" each time LISTEN is (re)established.
func (s *Store) listen(ctx context.Context, channel string, fn func(payload string)) error {
	delay := s.delay
	for {
		listened, err := s.listenOnce(ctx, channel, fn)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if listened {
			// The connection worked before it broke: start the back-off over.
			delay = s.delay
		}
		s.logger.Warn("pgstore: listener lost its connection; reconnecting", "channel", channel, "err", err, "in", delay)
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
func (s *Store) listenOnce(ctx context.Context, channel string, fn func(payload string)) (listened bool, err error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = listenerApp + "-" + channel
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("pgstore: listen: %w: %v", ErrUnavailable, err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("pgstore: listen: %w", err)
	}
	fn("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("pgstore: listen: %w", err)
		}
		if n.Channel == channel && n.Payload != "" {
			fn(n.Payload)
		}
	}
}
