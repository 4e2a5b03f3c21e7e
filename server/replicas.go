package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jumpgate/jumpgate/metrics"
)

// replicaName returns this replica's name: the configured one, else the
// host name plus a random suffix kept in data_dir (data_dir is per replica),
// so several replicas on one host never share a name and a restarted
// replica keeps its own.
func replicaName(dataDir, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "jumpgate"
	}
	p := filepath.Join(dataDir, "replica-id")
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return host + "-" + strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("server: replica id: %w", err)
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("server: replica id: %w", err)
	}
	id := hex.EncodeToString(r[:])
	if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("server: replica id: %w", err)
	}
	return host + "-" + id, nil
}

// leaser is a store shared by replicas that keeps per-replica leases.
type leaser interface {
	Heartbeat(ctx context.Context, replica string, ttl time.Duration) error
	ClaimExpiredReplicas(ctx context.Context, hold time.Duration) ([]string, error)
	DropLease(ctx context.Context, replica string) error
}

// runLeases renews this replica's lease every lease/5 and, each time, claims
// the replicas whose lease expired and marks their running sessions
// interrupted. On any store it also observes the storage latency (a ping).
// It returns when ctx ends.
func runLeases(ctx context.Context, core *Core, replica string, lease time.Duration, m *metrics.Metrics, log *slog.Logger) {
	ls, shared := core.Store.(leaser)
	tick := time.NewTicker(max(lease/5, 50*time.Millisecond))
	defer tick.Stop()
	for {
		start := time.Now()
		if err := core.Store.Ping(ctx); err == nil {
			m.Storage("ping", time.Since(start))
		}
		if shared {
			start = time.Now()
			if err := ls.Heartbeat(ctx, replica, lease); err != nil {
				if ctx.Err() == nil {
					log.Error("replica lease heartbeat", "err", err)
				}
			} else {
				m.Storage("heartbeat", time.Since(start))
			}
			sweepReplicas(ctx, core, ls, replica, lease, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func sweepReplicas(ctx context.Context, core *Core, ls leaser, self string, lease time.Duration, log *slog.Logger) {
	dead, err := ls.ClaimExpiredReplicas(ctx, lease)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("replica leases", "err", err)
		}
		return
	}
	for _, r := range dead {
		if r == self {
			continue // our own lease lapsed (a long pause); the heartbeat renews it
		}
		n, err := core.SweepReplica(ctx, r)
		if err != nil {
			log.Error("marking the sessions of a dead replica interrupted", "replica", r, "err", err)
			continue // the claim lapses and a later sweep retries
		}
		if n > 0 {
			log.Warn("replica is gone; its running sessions were marked interrupted", "replica", r, "sessions", n)
		}
		if err := ls.DropLease(ctx, r); err != nil {
			log.Error("replica leases", "err", err)
		}
	}
}
