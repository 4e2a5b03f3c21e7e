package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/ca"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/storage/boltstore"
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
	Logger   *slog.Logger
	Clock    func() time.Time
}

// OpenStore opens the configured storage backend.
func OpenStore(ctx context.Context, cfg *config.Config) (storage.Store, error) {
	if cfg.Storage == "bolt" || cfg.Storage == "" {
		return boltstore.Open(filepath.Join(cfg.DataDir, "jumpgate.db"))
	}
	if strings.HasPrefix(cfg.Storage, "postgres") {
		return nil, errors.New("server: storage postgres:// is not available in this build yet; use bolt")
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
	c.Authority = &ca.Authority{User: userCA, Host: hostCA, Store: st,
		DefaultTTL: cfg.CA.UserCertTTL.D(), MaxTTL: cfg.CA.MaxUserCertTTL.D()}
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
	return c, nil
}

// Close releases storage.
func (c *Core) Close() error { return c.Store.Close() }
