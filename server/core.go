package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/ca"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders/kube"
	"github.com/jumpgate/jumpgate/httpapi"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/storage/boltstore"
	"github.com/jumpgate/jumpgate/storage/pgstore"
)

// Core is the state every entry point shares: storage, audit log, CA and
// policy. The CLI's local mode opens a Core without listeners.
type Core struct {
	Cfg         *config.Config
	Store       storage.Store
	Audit       *audit.Log
	Authority   *ca.Authority
	Revocations *ca.Revocations
	Policy      *policy.Store
	// AuditKey signs recordings.
	AuditKey ed25519.PrivateKey
	// Recordings is where session recordings are written and read.
	Recordings recordings.Store
	// KubeCA issues the Kubernetes forwarder's serving certificates.
	KubeCA *kube.CA
	Logger *slog.Logger
	Clock  func() time.Time
}

// OpenStore opens the configured storage backend.
func OpenStore(ctx context.Context, cfg *config.Config) (storage.Store, error) {
	if cfg.Storage == "bolt" || cfg.Storage == "" {
		return boltstore.Open(filepath.Join(cfg.DataDir, "jumpgate.db"))
	}
	if strings.HasPrefix(cfg.Storage, "postgres") {
		return pgstore.Open(ctx, cfg.Storage)
	}
	return nil, fmt.Errorf("server: unknown storage %q", cfg.Storage)
}

// OpenCore opens storage and loads keys and policy.
func OpenCore(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Core, error) {
	if logger == nil {
		logger = slog.Default()
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c, err := openCore(ctx, cfg, st, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	return c, nil
}

func openCore(ctx context.Context, cfg *config.Config, st storage.Store, logger *slog.Logger) (*Core, error) {
	c := &Core{Cfg: cfg, Store: st, Logger: logger, Clock: time.Now}
	userCA, err := ca.LoadOrCreateKey(ctx, cfg.CA.UserKeyFile, st, "ca/user")
	if err != nil {
		return nil, err
	}
	hostCA, err := ca.LoadOrCreateKey(ctx, cfg.CA.HostKeyFile, st, "ca/host")
	if err != nil {
		return nil, err
	}
	if string(userCA.PublicKey().Marshal()) == string(hostCA.PublicKey().Marshal()) {
		return nil, errors.New("server: the user CA and the host CA must be different keys")
	}
	if c.AuditKey, err = ca.LoadOrCreateEd25519(ctx, filepath.Join(cfg.DataDir, "ca", "audit_key"), st, "audit/signing"); err != nil {
		return nil, err
	}
	if cfg.CA.KubeCertFile != "" {
		c.KubeCA, err = kube.LoadCAFiles(cfg.CA.KubeCertFile, cfg.CA.KubeKeyFile, nil)
	} else {
		c.KubeCA, err = kube.LoadOrCreateCA(ctx, filepath.Join(cfg.DataDir, "kube"), st, nil)
	}
	if err != nil {
		return nil, err
	}
	c.Authority = &ca.Authority{User: userCA, Host: hostCA, Store: st,
		DefaultTTL: cfg.CA.UserCertTTL.D(), MaxTTL: cfg.CA.MaxUserCertTTL.D()}
	if c.Authority.TrustedUser, err = ca.ParseTrustedKeys(cfg.CA.TrustedUserCAKeys); err != nil {
		return nil, fmt.Errorf("server: ca.trusted_user_ca_keys: %w", err)
	}
	if c.Authority.TrustedHost, err = ca.ParseTrustedKeys(cfg.CA.TrustedHostCAKeys); err != nil {
		return nil, fmt.Errorf("server: ca.trusted_host_ca_keys: %w", err)
	}
	if c.Revocations, err = ca.NewRevocations(ctx, st); err != nil {
		return nil, err
	}
	if cfg.PolicyFile != "" {
		if c.Policy, err = policy.NewStore(cfg.PolicyFile); err != nil {
			return nil, fmt.Errorf("server: policy: %w", err)
		}
	} else {
		logger.Warn("no policy_file configured: nobody holds a role")
		c.Policy = policy.Static(&policy.Policy{})
	}
	c.Audit = audit.New(st, nil, logger)
	// On a shared database the recordings live there too, so every
	// replica replays every session.
	if cs, ok := st.(recordings.ChunkStore); ok {
		c.Recordings = recordings.Chunked{Chunks: cs}
	} else {
		c.Recordings = recordings.Dir{Path: cfg.Recordings.Dir}
	}
	return c, nil
}

// API returns the HTTPS API over this core, without token verification
// or caller authentication (the caller sets Tokens and Auth).
func (c *Core) API(queue *approvals.Queue) *httpapi.API {
	if queue == nil {
		queue = &approvals.Queue{Store: c.Store, Audit: c.Audit, Policy: c.Policy}
	}
	return &httpapi.API{
		Authority: c.Authority, Revocations: c.Revocations, Policy: c.Policy, Audit: c.Audit, Store: c.Store,
		KRL:      func(ctx context.Context) ([]byte, error) { return BuildKRL(c) },
		AuditKey: c.AuditKey.Public().(ed25519.PublicKey), Logger: c.Logger, RateLimit: c.Cfg.CA.RateLimit,
		Approvals: queue, RecordingsDir: c.Cfg.Recordings.Dir, Recordings: c.Recordings, KubeCAPEM: c.KubeCA.PEM(),
		Targets: func() []config.Target { return c.Cfg.Targets },
	}
}

// LocalAuth authenticates every caller as the local administrator: for the
// admin socket (root on the server host) and the CLI's --config mode.
func LocalAuth(*http.Request, []byte) (httpapi.Caller, error) {
	return httpapi.Caller{Username: "local-admin", Local: true}, nil
}

// Close releases storage.
func (c *Core) Close() error { return c.Store.Close() }

// RecoverSessions marks the sessions a previous run of this replica left
// running as interrupted: their recordings are kept as the playable prefix
// that reached the disk (or the database), hashed and signed, and a
// session.end event says so.
func (c *Core) RecoverSessions(ctx context.Context, replica string) (int, error) {
	_, shared := c.Store.(sessionClaimer)
	return c.interruptSessions(ctx, func(s storage.Session) bool {
		// Alone on its store, every running session was this server's
		// (whatever name an older release gave it); on a shared one only
		// those it owned.
		return !shared || s.Replica == replica
	}, "the server stopped while the session ran")
}

// SweepReplica marks the running sessions of replica, whose lease expired
// (killed or cut off), as interrupted.
func (c *Core) SweepReplica(ctx context.Context, replica string) (int, error) {
	return c.interruptSessions(ctx, func(s storage.Session) bool { return s.Replica == replica },
		"replica "+replica+" stopped while the session ran")
}

// sessionClaimer is implemented by stores shared by several replicas: only
// the caller that moves a session out of running ends it.
type sessionClaimer interface {
	ClaimSession(ctx context.Context, id, from, to string) (bool, error)
}

func (c *Core) interruptSessions(ctx context.Context, match func(storage.Session) bool, reason string) (int, error) {
	list, err := c.Store.Sessions(ctx, storage.SessionFilter{Status: storage.SessionRunning})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range list {
		if !match(s) {
			continue
		}
		if cl, ok := c.Store.(sessionClaimer); ok {
			won, err := cl.ClaimSession(ctx, s.ID, storage.SessionRunning, storage.SessionInterrupted)
			if err != nil {
				return n, err
			}
			if !won {
				continue // another replica ended it
			}
		}
		details := map[string]any{"status": storage.SessionInterrupted, "kind": s.Kind, "recording": s.Recording, "login": s.Login}
		if s.Recording != "" {
			if sum, size, err := c.Recordings.Hash(ctx, s.Recording); err == nil {
				sig, _ := recorder.Sign(c.AuditKey, sum, s.ID)
				s.SHA256, s.Signature = sum, sig
				details["sha256"], details["signature"], details["recording_bytes"] = sum, sig, size
			} else {
				details["recording_error"] = err.Error()
			}
		}
		s.Status, s.EndReason = storage.SessionInterrupted, reason
		if s.End.IsZero() {
			s.End = c.Clock().UTC()
		}
		details["end_reason"] = s.EndReason
		if _, err := c.Audit.Emit(ctx, audit.Event{Type: audit.SessionEnd, User: s.User, Target: s.Target, Session: s.ID, Source: s.Source, Details: details}); err != nil {
			return n, err
		}
		if err := c.Store.PutSession(ctx, s); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
