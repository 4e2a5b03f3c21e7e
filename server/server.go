package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/bastion"
	"github.com/jumpgate/jumpgate/ca"
	"github.com/jumpgate/jumpgate/ca/krl"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/forwarders/kube"
	"github.com/jumpgate/jumpgate/forwarders/postgres"
	"github.com/jumpgate/jumpgate/httpapi"
	"github.com/jumpgate/jumpgate/identity"
	"github.com/jumpgate/jumpgate/login"
	"github.com/jumpgate/jumpgate/metrics"
	"github.com/jumpgate/jumpgate/notify"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/sshauth"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/storage/pgstore"
	"github.com/jumpgate/jumpgate/web"
)

// Options are what the command line (or a test) adds to the config.
type Options struct {
	Logger *slog.Logger
	// HTTPSListener and SSHListener, when set, are used instead of
	// cfg.Listen (jumpgate dev binds them first to learn its ports).
	HTTPSListener, SSHListener net.Listener
	// Mounts adds handlers to the HTTPS mux (the dev IdP).
	Mounts map[string]http.Handler
	// LocalShell serves local targets.
	LocalShell bastion.LocalShell
	// OnReady is called once everything listens.
	OnReady func(Ready)
	// DrainTimeout bounds the graceful shutdown (default 10s).
	DrainTimeout time.Duration
	Replica      string
	// Reload receives SIGHUP: policy and the target inventory are reloaded
	// (ConfigFile is re-read for targets; other settings need a restart).
	Reload     <-chan os.Signal
	ConfigFile string
}

// Ready describes a running server.
type Ready struct {
	HTTPSAddr, SSHAddr string
	TLSFingerprint     string
	TLSCertFile        string
	AdminSocket        string
	Core               *Core
}

// AdminSocketPath is where local CLI commands reach a running server.
func AdminSocketPath(dataDir string) string { return filepath.Join(dataDir, "admin.sock") }

// Run runs a jumpgate server until ctx ends, then drains.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("server: data_dir: %w", err)
	}
	if err := os.MkdirAll(cfg.Recordings.Dir, 0o700); err != nil {
		return fmt.Errorf("server: recordings dir: %w", err)
	}
	core, err := OpenCore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer core.Close()
	m := metrics.New()
	m.Preset()
	core.Audit.OnAppend = countPolicyEvents(m)
	replica := opts.Replica
	if replica == "" {
		if replica, err = replicaName(cfg.DataDir, cfg.Replica); err != nil {
			return err
		}
	}
	if n, err := core.RecoverSessions(ctx, replica); err != nil {
		return fmt.Errorf("server: recover sessions: %w", err)
	} else if n > 0 {
		log.Warn("sessions left running by a previous run marked interrupted", "count", n)
	}

	var issuers []identity.Issuer
	if cfg.OIDC.Issuer != "" {
		issuers = append(issuers, identity.Issuer{URL: cfg.OIDC.Issuer, Audience: cfg.OIDC.ClientID,
			UsernameClaim: cfg.OIDC.UsernameClaim, GroupsClaim: cfg.OIDC.GroupsClaim, CAFile: cfg.OIDC.CAFile})
	}
	for _, mi := range cfg.MachineIdentities {
		issuers = append(issuers, identity.Issuer{URL: mi.Issuer, Audience: mi.Audience, Machine: true, Subject: mi.Subject, Role: mi.Role, CAFile: mi.CAFile})
	}
	verifier, err := identity.New(nil, issuers...)
	if err != nil {
		return err
	}
	if l, ok := core.Store.(storage.TokenLedger); ok {
		verifier.ShareUsed(l) // replicas share one record of used ID tokens
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	wg.Add(3)
	go func() {
		defer wg.Done()
		runLeases(runCtx, core, replica, cfg.ReplicaLease.D(), m, log)
	}()
	go func() {
		defer wg.Done()
		core.Revocations.Run(runCtx, 2*time.Second, func(err error) { log.Error("revocation refresh", "err", err) })
	}()
	go func() {
		defer wg.Done()
		core.Policy.Watch(runCtx, time.Second, func(changed bool, err error) {
			if err != nil {
				log.Error("policy rejected; the previous policy stays in force", "file", cfg.PolicyFile, "err", err)
				_, _ = core.Audit.Emit(runCtx, audit.Event{Type: audit.PolicyRejected, Details: map[string]any{"file": cfg.PolicyFile, "error": err.Error()}})
				return
			}
			log.Info("policy reloaded", "file", cfg.PolicyFile)
			_, _ = core.Audit.Emit(runCtx, audit.Event{Type: audit.PolicyReloaded, Details: map[string]any{"file": cfg.PolicyFile}})
		})
	}()

	var targets atomic.Pointer[[]config.Target]
	targets.Store(&cfg.Targets)
	if opts.Reload != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-opts.Reload:
					reload(runCtx, core, opts.ConfigFile, &targets, log)
				}
			}
		}()
	}
	queue := &approvals.Queue{Store: core.Store, Audit: core.Audit, Policy: core.Policy}
	// Several replicas on PostgreSQL: a decision taken on another replica
	// wakes the holds waiting here at once (LISTEN/NOTIFY).
	if pg, ok := core.Store.(*pgstore.Store); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = pg.ListenRequests(runCtx, queue.Wake)
		}()
	}
	if hooks, err := webhookURLs(cfg); err != nil {
		return err
	} else if len(hooks) > 0 {
		n := &notify.Notifier{URLs: hooks, Logger: log}
		queue.Notifier = n
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Run(runCtx)
		}()
	}
	var ready Ready
	ready.Core = core

	// Bastion.
	var bas *bastion.Server
	sshLn := opts.SSHListener
	if cfg.BastionEnabled() || sshLn != nil {
		if sshLn == nil {
			if sshLn, err = net.Listen("tcp", cfg.Listen.SSH); err != nil {
				return fmt.Errorf("server: listen ssh: %w", err)
			}
		}
		defer sshLn.Close()
		hostSigner, err := bastionHostSigner(ctx, core, cfg)
		if err != nil {
			return err
		}
		pg := postgres.New(postgres.Config{Policy: core.Policy, Audit: core.Audit, Approvals: queue,
			HoldTimeout: cfg.Bastion.HoldTimeout.D(), Logger: log})
		defer pg.Close()
		kf := kube.New(kube.Config{Policy: core.Policy, Audit: core.Audit, CA: core.KubeCA, Approvals: queue,
			HoldTimeout: cfg.Bastion.HoldTimeout.D(), Logger: log,
			RecordingsDir: cfg.Recordings.Dir, Recordings: core.Recordings, Replica: replica, Sessions: core.Store, AuditKey: core.AuditKey, FailClosed: cfg.RecordingsFailClosed()})
		defer kf.Close()
		bas, err = bastion.New(bastion.Config{
			HostSigner: hostSigner, Authority: core.Authority, Revocations: core.Revocations, Certs: core.Store,
			Policy: core.Policy, Audit: core.Audit, Sessions: core.Store, Approvals: queue,
			Targets: func() []config.Target { return *targets.Load() }, RecordingsDir: cfg.Recordings.Dir,
			Recordings: core.Recordings, FailClosed: cfg.RecordingsFailClosed(), AuditKey: core.AuditKey, MaxStartups: cfg.Bastion.MaxStartups, PerSourceMaxStartups: cfg.Bastion.PerSourceMaxStartups,
			LoginGraceTime: cfg.Bastion.LoginGraceTime.D(), MaxChannels: cfg.Bastion.MaxChannels,
			HoldTimeout: cfg.Bastion.HoldTimeout.D(), Metrics: m, Logger: log, Replica: replica, LocalShell: opts.LocalShell,
			Grants: queue.Grants, Forwarders: map[string]forwarders.Forwarder{config.KindPostgres: pg, config.KindKubernetes: kf},
		})
		if err != nil {
			return err
		}
		ready.SSHAddr = sshLn.Addr().String()
		// A session ended from another replica's console or API ends here.
		if ps, ok := core.Store.(*pgstore.Store); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = ps.ListenTerminations(runCtx, func(id, by string) {
					if err := bas.Terminate(id, fmt.Errorf("ended by %s from the web console", by)); err == nil {
						log.Info("session ended at another replica's request", "session", id, "by", by)
					}
				})
			}()
		}
	}

	// HTTPS API.
	api := core.API(queue)
	api.Tokens, api.Metrics, api.Grants = verifier, m, queue.Grants
	api.Targets = func() []config.Target { return *targets.Load() }
	api.Config = httpapi.PublicConfig{Issuer: cfg.OIDC.Issuer, ClientID: cfg.OIDC.ClientID,
		Scopes: cfg.OIDC.Scopes, DeviceFlow: true, SSHAddress: advertisedSSH(cfg, ready.SSHAddr), Dev: cfg.Dev}
	api.Ready = func(ctx context.Context) error {
		if err := core.Store.Ping(ctx); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		if cfg.BastionEnabled() {
			if err := core.Recordings.CheckWritable(ctx); err != nil {
				return fmt.Errorf("recordings: %w", err)
			}
		}
		return nil
	}
	var console http.Handler
	if cfg.WebEnabled() && cfg.OIDC.Issuer != "" {
		idpClient, err := login.HTTPClient(cfg.OIDC.CAFile)
		if err != nil {
			return err
		}
		c, err := web.New(web.Config{Issuer: cfg.OIDC.Issuer, ClientID: cfg.OIDC.ClientID, Scopes: cfg.OIDC.Scopes,
			UsernameClaim: cfg.OIDC.UsernameClaim, GroupsClaim: cfg.OIDC.GroupsClaim, HTTPClient: idpClient, API: api, Logger: log,
			Terminate: func(ctx context.Context, id, by string) error {
				return terminate(ctx, core, bas, replica, id, by)
			}})
		if err != nil {
			return err
		}
		console = c.Handler()
	}
	api.Extra = func(mux *http.ServeMux) {
		mux.Handle("GET /metrics", m.Handler())
		for p, h := range opts.Mounts {
			mux.Handle(p, h)
		}
		if console != nil {
			mux.Handle("/", console)
		}
	}
	sigVerifier := &sshauth.Verifier{Checker: sshauth.CAChecker(core.Authority.UserCAKeys(), core.Revocations.IsRevoked, nil)}
	api.Auth = func(r *http.Request, body []byte) (httpapi.Caller, error) {
		cert, err := sigVerifier.Verify(r, body)
		if err != nil {
			return httpapi.Caller{}, err
		}
		rec, err := core.Store.Cert(r.Context(), cert.Serial)
		if err != nil || rec.KeyID != cert.KeyId {
			return httpapi.Caller{}, fmt.Errorf("server: certificate %d is not a user certificate this CA issued", cert.Serial)
		}
		return httpapi.Caller{Username: rec.User, Groups: rec.Groups, Roles: rec.Roles, Serial: cert.Serial}, nil
	}
	handler := api.Handler()

	var httpsSrv *http.Server
	httpsLn := opts.HTTPSListener
	if httpsLn != nil || cfg.Listen.HTTPS != "" {
		hosts := append([]string(nil), cfg.Bastion.Hostnames...)
		cert, fp, err := loadOrCreateTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.DataDir, hosts)
		if err != nil {
			return err
		}
		ready.TLSFingerprint = fp
		ready.TLSCertFile = cfg.TLS.CertFile
		if ready.TLSCertFile == "" {
			ready.TLSCertFile, _ = SelfSignedPaths(cfg.DataDir)
			log.Info("serving HTTPS with a self-signed certificate; pass it to clients with --ca-file", "file", ready.TLSCertFile, "fingerprint", fp)
		}
		if httpsLn == nil {
			if httpsLn, err = net.Listen("tcp", cfg.Listen.HTTPS); err != nil {
				return fmt.Errorf("server: listen https: %w", err)
			}
		}
		defer httpsLn.Close()
		httpsSrv = &http.Server{
			Handler:           securityHeaders(handler),
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      0, // replay and watch streams are long
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		ready.HTTPSAddr = httpsLn.Addr().String()
	}

	// Admin socket: the same API, for root on this host.
	sock := AdminSocketPath(cfg.DataDir)
	_ = os.Remove(sock)
	adminLn, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("server: admin socket: %w", err)
	}
	_ = os.Chmod(sock, 0o600)
	defer os.Remove(sock)
	ready.AdminSocket = sock
	adminAPI := core.API(queue)
	adminAPI.Auth = LocalAuth
	adminSrv := &http.Server{Handler: adminAPI.Handler(), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 3)
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("server: %s: %w", name, err)
			}
		}()
	}
	if bas != nil {
		serve("bastion", func() error { return bas.Serve(sshLn) })
	}
	if httpsSrv != nil {
		serve("https", func() error { return httpsSrv.ServeTLS(httpsLn, "", "") })
	}
	serve("admin", func() error { return adminSrv.Serve(adminLn) })
	wg.Add(1)
	go func() {
		defer wg.Done()
		closeAccessWindows(runCtx, core, queue, bas, log)
	}()
	_, _ = core.Audit.Emit(ctx, audit.Event{Type: audit.ServerStarted, Details: map[string]any{"replica": replica, "ssh": ready.SSHAddr, "https": ready.HTTPSAddr}})
	log.Info("jumpgate running", "ssh", ready.SSHAddr, "https", ready.HTTPSAddr, "admin_socket", sock, "data_dir", cfg.DataDir)
	if opts.OnReady != nil {
		opts.OnReady(ready)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		log.Error("server failed", "err", runErr)
	}
	drain := opts.DrainTimeout
	if drain <= 0 {
		drain = 10 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if bas != nil {
		_ = bas.Shutdown(sctx, errors.New("the server is shutting down"))
	}
	if httpsSrv != nil {
		_ = httpsSrv.Shutdown(sctx)
	}
	_ = adminSrv.Shutdown(sctx)
	stop()
	return runErr
}

// closeAccessWindows ends just-in-time access when its window closes: the
// user's open sessions to the target are ended with a message, and
// certificates issued during the window that outlive it are revoked.
// lapsedWithin is how long after a window ends every replica keeps
// checking for its own sessions under it.
const lapsedWithin = 10 * time.Minute

// closeAccessWindows ends just-in-time access when its window closes: every
// second each replica ends its own sessions under lapsed windows (a replica
// sees only its own), and one replica closes each window out — revokes the
// certificates that outlive it and writes access.ended.
func closeAccessWindows(ctx context.Context, core *Core, queue *approvals.Queue, bas *bastion.Server, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lapsed, err := queue.Lapsed(ctx, lapsedWithin)
		if err != nil {
			log.Error("access windows", "err", err)
			continue
		}
		for _, r := range lapsed {
			ended := endLapsedSessions(ctx, core, queue, bas, r)
			if len(ended) > 0 {
				log.Info("sessions ended: access window closed", "request", r.ID, "user", r.User, "target", r.Target, "sessions", ended)
			}
			if !r.ClosedAt.IsZero() {
				continue
			}
			if err := closeWindow(ctx, core, queue, r, ended); err != nil {
				log.Error("closing an access window", "request", r.ID, "err", err)
				continue
			}
		}
	}
}

// endLapsedSessions ends this replica's sessions of r's user to r's target
// unless another grant or a role still gives access.
func endLapsedSessions(ctx context.Context, core *Core, queue *approvals.Queue, bas *bastion.Server, r storage.Request) []string {
	if bas == nil {
		return nil
	}
	id := policy.Identity{User: r.User, Groups: r.Groups}
	if grants, err := queue.Grants(ctx, r.User); err == nil {
		id.Grants = grants // another window to the same target may still be open
	}
	tgt := policy.Target{Name: r.Target}
	for _, t := range core.Cfg.Targets {
		if t.Name == r.Target {
			tgt = policy.Target{Name: t.Name, Kind: t.Kind, Labels: t.Labels}
		}
	}
	if core.Policy.Current().AccessTo(id, tgt).Allowed {
		return nil
	}
	return bas.TerminateWhere(r.User, r.Target, fmt.Errorf("your just-in-time access to %s (request %s) has ended", r.Target, r.ID))
}

// closeWindow closes r out once across replicas: the certificates issued
// in the window that outlive it are revoked (revoking twice is harmless),
// then the replica that claims the window writes access.ended.
func closeWindow(ctx context.Context, core *Core, queue *approvals.Queue, r storage.Request, sessions []string) error {
	certs, err := core.Store.CertsByUser(ctx, r.User)
	if err != nil {
		return err
	}
	var revoked []uint64
	for _, c := range certs {
		if c.ValidUntil.After(r.AccessUntil) && !c.IssuedAt.Before(r.DecidedAt) && !c.IssuedAt.After(r.AccessUntil) {
			if err := core.Revocations.Revoke(ctx, storage.Revocation{Serial: c.Serial, By: "jumpgate", Reason: "access window " + r.ID + " ended", At: time.Now().UTC()}); err != nil {
				return err
			}
			revoked = append(revoked, c.Serial)
		}
	}
	won, err := queue.ClaimClose(ctx, r.ID)
	if err != nil || !won {
		return err
	}
	_, err = core.Audit.Emit(ctx, audit.Event{Type: audit.AccessEnded, User: r.User, Target: r.Target, Details: map[string]any{
		"request": r.ID, "sessions_ended": sessions, "revoked_serials": revoked, "until": r.AccessUntil,
	}})
	return err
}

func webhookURLs(cfg *config.Config) ([]string, error) {
	var out []string
	for _, w := range cfg.Notifications.Webhooks {
		if w.URLFile == "" {
			out = append(out, w.URL)
			continue
		}
		b, err := os.ReadFile(w.URLFile)
		if err != nil {
			return nil, fmt.Errorf("server: webhook url_file: %w", err)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// reload handles SIGHUP.
func reload(ctx context.Context, core *Core, file string, targets *atomic.Pointer[[]config.Target], log *slog.Logger) {
	if changed, err := core.Policy.Reload(); err != nil {
		log.Error("SIGHUP: policy rejected; the previous policy stays in force", "err", err)
	} else if changed {
		log.Info("SIGHUP: policy reloaded")
		_, _ = core.Audit.Emit(ctx, audit.Event{Type: audit.PolicyReloaded, Details: map[string]any{"trigger": "SIGHUP"}})
	}
	if err := core.Revocations.Refresh(ctx); err != nil {
		log.Error("SIGHUP: revocations", "err", err)
	}
	if file == "" {
		return
	}
	cfg, err := config.Load(file)
	if err != nil {
		log.Error("SIGHUP: config rejected; the previous targets stay in force", "err", err)
		return
	}
	targets.Store(&cfg.Targets)
	log.Info("SIGHUP: targets reloaded", "count", len(cfg.Targets))
}

func advertisedSSH(cfg *config.Config, bound string) string {
	if bound == "" {
		return ""
	}
	_, port, _ := net.SplitHostPort(bound)
	host := "127.0.0.1"
	if len(cfg.Bastion.Hostnames) > 0 {
		host = cfg.Bastion.Hostnames[0]
	}
	return net.JoinHostPort(host, port)
}

// bastionHostSigner returns the bastion's host key with a host certificate
// for its hostnames, renewed at every start.
func bastionHostSigner(ctx context.Context, core *Core, cfg *config.Config) (gossh.Signer, error) {
	key, err := ca.LoadOrCreateKey(ctx, filepath.Join(cfg.DataDir, "ssh_host_ed25519_key"), nil, "")
	if err != nil {
		return nil, err
	}
	names := cfg.Bastion.Hostnames
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil && h != "" {
			names = append(names, h)
		}
	}
	cert, err := core.Authority.SignHost(ctx, ca.HostRequest{PublicKey: key.PublicKey(), Principals: names, KeyID: "jumpgate-bastion", TTL: 365 * 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	return gossh.NewCertSigner(cert, key)
}

// BuildKRL renders the current revocations as an OpenSSH KRL for the user CA.
func BuildKRL(core *Core) ([]byte, error) {
	sec := krl.CertSection{CA: core.Authority.User.PublicKey()}
	for _, r := range core.Revocations.List() {
		if r.Serial != 0 {
			sec.Serials = append(sec.Serials, r.Serial)
		}
		if r.KeyID != "" {
			sec.KeyIDs = append(sec.KeyIDs, r.KeyID)
		}
	}
	k := &krl.KRL{Version: uint64(time.Now().Unix()), GeneratedAt: time.Now(), Comment: "jumpgate", Certificates: []krl.CertSection{sec}}
	return k.Marshal()
}

// securityHeaders adds headers every response should carry.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		if !strings.HasPrefix(r.URL.Path, "/dev-idp/") {
			w.Header().Set("X-Frame-Options", "DENY")
		}
		h.ServeHTTP(w, r)
	})
}

// terminate ends running session id for by (the web console): here when it
// runs here, or — with several replicas on PostgreSQL — by asking the
// replica that runs it. The session.terminated event is written once, by
// the replica that was asked, before the session is ended.
func terminate(ctx context.Context, core *Core, bas *bastion.Server, replica, id, by string) error {
	if bas == nil {
		return bastion.ErrNoSuchSession
	}
	local := bas.IsLive(id)
	pg, shared := core.Store.(*pgstore.Store)
	if !local {
		s, err := core.Store.Session(ctx, id)
		if err != nil || s.Status != storage.SessionRunning || !shared || s.Replica == replica {
			return bastion.ErrNoSuchSession
		}
	}
	if _, err := core.Audit.Emit(ctx, audit.Event{Type: audit.SessionTerminated, User: by, Session: id}); err != nil {
		return err
	}
	if local {
		return bas.Terminate(id, fmt.Errorf("ended by %s from the web console", by))
	}
	return pg.RequestTermination(ctx, id, by)
}
