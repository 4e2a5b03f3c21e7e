package httpapi

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/ca"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/identity"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
)

// TokenVerifier verifies OIDC ID tokens.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (identity.Identity, error)
	MarkUsed(ctx context.Context, raw string, expiry time.Time) error
}

// Caller is an identity authenticated by its SSH certificate (CLI calls).
type Caller struct {
	Username string
	Groups   []string
	Roles    []string
	Serial   uint64
	// Local is true for calls over the server's admin socket (root on the
	// server host), which act with every right.
	Local bool
}

// PolicyIdentity converts c for policy evaluation.
func (c Caller) PolicyIdentity() policy.Identity {
	return policy.Identity{User: c.Username, Groups: c.Groups, Roles: c.Roles}
}

// CallerAuth authenticates a CLI request.
type CallerAuth func(r *http.Request, body []byte) (Caller, error)

// PublicConfig is served at /v1/config for `jumpgate login`.
type PublicConfig struct {
	Issuer     string   `json:"issuer"`
	ClientID   string   `json:"client_id"`
	Scopes     []string `json:"scopes"`
	DeviceFlow bool     `json:"device_flow"`
	SSHAddress string   `json:"ssh_address"`
	Dev        bool     `json:"dev,omitempty"`
}

// Metrics receives counters from the API.
type Metrics interface {
	CertIssued()
	AuthFailed(reason string)
}

// API serves the JSON endpoints.
type API struct {
	Authority   *ca.Authority
	Revocations *ca.Revocations
	Tokens      TokenVerifier
	Policy      *policy.Store
	Audit       *audit.Log
	Store       storage.Store
	// KRL renders the current KRL.
	KRL      func(ctx context.Context) ([]byte, error)
	AuditKey ed25519.PublicKey
	Config   PublicConfig
	Auth     CallerAuth
	Logger   *slog.Logger
	Metrics  Metrics
	Clock    func() time.Time
	// RateLimit is certificate requests per minute per IP and per identity.
	RateLimit int
	// Ready reports readiness for /readyz.
	Ready func(ctx context.Context) error
	// Approvals is the request queue.
	Approvals *approvals.Queue
	// RecordingsDir holds session recordings; used when Recordings is nil.
	RecordingsDir string
	// Recordings reads recordings (files, or chunks in the shared database).
	Recordings recordings.Store
	// Targets returns the inventory.
	Targets func() []config.Target
	// KubeCAPEM is the CA of the Kubernetes forwarder's serving certificates.
	KubeCAPEM []byte
	// Grants returns a user's open just-in-time access windows.
	Grants func(ctx context.Context, user string) ([]policy.Grant, error)
	// Extra registers more routes (sessions, requests, console).
	Extra func(mux *http.ServeMux)

	ipLimit, idLimit *limiter
}

// MaxBody bounds request bodies.
const MaxBody = 64 << 10

func (a *API) now() time.Time {
	if a.Clock != nil {
		return a.Clock()
	}
	return time.Now()
}

// Handler returns the API's routes.
func (a *API) Handler() http.Handler {
	if a.Logger == nil {
		a.Logger = slog.Default()
	}
	burst := a.RateLimit / 3
	if burst < 5 {
		burst = 5
	}
	a.ipLimit = newLimiter(a.RateLimit*4, burst*4, a.Clock)
	a.idLimit = newLimiter(a.RateLimit, burst, a.Clock)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/ssh/certificates", a.handleCertificate)
	mux.HandleFunc("GET /v1/ca/user", a.handleCAKey(false))
	mux.HandleFunc("GET /v1/ca/host", a.handleCAKey(true))
	mux.HandleFunc("GET /v1/krl", a.handleKRL)
	mux.HandleFunc("GET /v1/audit/key", a.handleAuditKey)
	mux.HandleFunc("GET /v1/kube/ca", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(a.KubeCAPEM)
	})
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, a.Config) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /readyz", a.handleReady)
	mux.HandleFunc("GET /v1/whoami", a.authed(a.handleWhoami))
	mux.HandleFunc("GET /v1/audit", a.authed(a.handleAuditList))
	mux.HandleFunc("GET /v1/audit/verify", a.authed(a.handleAuditVerify))
	mux.HandleFunc("POST /v1/ca/revoke", a.authed(a.handleRevoke))
	mux.HandleFunc("POST /v1/ca/host-certificates", a.authed(a.handleSignHost))
	a.registerSessions(mux)
	if a.Approvals != nil {
		a.registerRequests(mux)
	}
	if a.Extra != nil {
		a.Extra(mux)
	}
	return mux
}

// ClientIP is the peer address without port.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (a *API) fail(ctx context.Context, w http.ResponseWriter, r *http.Request, e *Error, user, reason string) {
	if e.Status >= 500 {
		a.Logger.Error("api request failed", "path", r.URL.Path, "status", e.Status, "err", e.Cause)
	} else {
		a.Logger.Info("api request refused", "path", r.URL.Path, "status", e.Status, "user", user, "reason", reason, "err", e.Cause)
	}
	if reason != "" && a.Audit != nil {
		details := map[string]any{"reason": reason, "endpoint": r.URL.Path, "status": e.Status}
		if e.Cause != nil {
			details["cause"] = e.Cause.Error()
		}
		if _, err := a.Audit.Emit(ctx, audit.Event{Type: audit.AuthFailed, User: user, Source: ClientIP(r), Details: details}); err != nil {
			a.Logger.Error("audit of refusal failed", "err", err)
		}
		if a.Metrics != nil {
			a.Metrics.AuthFailed(reason)
		}
	}
	writeError(w, e)
}

type certRequest struct {
	PublicKey string `json:"public_key"`
	TTL       string `json:"ttl"`
}

type certResponse struct {
	Certificate string    `json:"certificate"`
	HostCA      string    `json:"host_ca"`
	Serial      uint64    `json:"serial"`
	ExpiresAt   time.Time `json:"expires_at"`
	TTL         string    `json:"ttl"`
	TTLClamped  bool      `json:"ttl_clamped"`
	Principals  []string  `json:"principals"`
	KeyID       string    `json:"key_id"`
}

// reason codes for auth.failed
const (
	reasonRateLimit  = "rate_limited"
	reasonNoToken    = "no_token"
	reasonBadToken   = "invalid_token"
	reasonReplay     = "token_replayed"
	reasonLedger     = "token_ledger_unavailable"
	reasonIdPDown    = "idp_unavailable"
	reasonNoRole     = "no_role"
	reasonBadRequest = "bad_request"
	reasonBadKey     = "bad_public_key"
)

func (a *API) handleCertificate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ip := ClientIP(r)
	if !a.ipLimit.allow("ip:" + ip) {
		a.fail(ctx, w, r, apiErr(http.StatusTooManyRequests, "too many certificate requests; slow down", nil), "", reasonRateLimit)
		return
	}
	raw, ok := bearer(r)
	if !ok {
		a.fail(ctx, w, r, apiErr(http.StatusUnauthorized, "missing bearer ID token", nil), "", reasonNoToken)
		return
	}
	body, berr := readBody(w, r)
	if berr != nil {
		a.fail(ctx, w, r, berr, "", reasonBadRequest)
		return
	}
	var req certRequest
	if err := decodeStrict(body, &req); err != nil {
		a.fail(ctx, w, r, apiErr(http.StatusBadRequest, "request body must be JSON {\"public_key\": ..., \"ttl\": ...}", err), "", reasonBadRequest)
		return
	}
	id, err := a.Tokens.Verify(ctx, raw)
	if err != nil {
		reason := reasonBadToken
		if errors.Is(err, identity.ErrUnavailable) {
			reason = reasonIdPDown
		}
		a.fail(ctx, w, r, classify(err), "", reason)
		return
	}
	if !a.idLimit.allow("id:" + id.Username) {
		a.fail(ctx, w, r, apiErr(http.StatusTooManyRequests, "too many certificate requests for this identity; slow down", nil), id.Username, reasonRateLimit)
		return
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil || len(strings.TrimSpace(string(rest))) > 0 {
		a.fail(ctx, w, r, apiErr(http.StatusBadRequest, "public_key must be one OpenSSH public key line", err), id.Username, reasonBadKey)
		return
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		a.fail(ctx, w, r, apiErr(http.StatusBadRequest, "public_key must be a plain key, not a certificate", nil), id.Username, reasonBadKey)
		return
	}
	if err := ca.CheckPublicKey(pub); err != nil {
		a.fail(ctx, w, r, classify(err), id.Username, reasonBadKey)
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			a.fail(ctx, w, r, apiErr(http.StatusBadRequest, "ttl must be a positive duration such as 10m", err), id.Username, reasonBadRequest)
			return
		}
	}
	pol := a.Policy.Current()
	pid := policy.Identity{User: id.Username, Groups: id.Groups, Roles: id.Roles}
	if a.Grants != nil {
		if pid.Grants, err = a.Grants(ctx, id.Username); err != nil {
			a.fail(ctx, w, r, apiErr(http.StatusServiceUnavailable, "access grants cannot be read; try again", err), id.Username, "")
			return
		}
	}
	roles := pol.RolesFor(pid)
	if !pol.HasAccess(pid) {
		a.fail(ctx, w, r, apiErr(http.StatusForbidden, "no role in policy grants you access", nil), id.Username, reasonNoRole)
		return
	}
	if err := a.Tokens.MarkUsed(ctx, raw, id.Expiry); err != nil {
		reason := reasonReplay
		if errors.Is(err, identity.ErrLedger) {
			reason = reasonLedger
		}
		a.fail(ctx, w, r, classify(err), id.Username, reason)
		return
	}
	principals := pol.Logins(pid)
	if len(principals) == 0 {
		principals = []string{"jg-" + id.Username}
	}
	feat := pol.Features(pid)
	roleNames := make([]string, 0, len(roles))
	for _, ro := range roles {
		roleNames = append(roleNames, ro.Name)
	}
	var clamped bool
	var ttlUsed time.Duration
	// The certificate record and its cert.issued event are one durable
	// write: a certificate that is not in the audit log is never handed out.
	record := func(ctx context.Context, rec storage.CertRecord) error {
		_, err := a.Audit.EmitWith(ctx, audit.Event{Type: audit.CertIssued, User: id.Username, Source: ClientIP(r), Details: map[string]any{
			"serial": rec.Serial, "key_id": rec.KeyID, "principals": principals, "roles": roleNames,
			"expires_at": rec.ValidUntil, "ttl": ttlUsed.String(), "ttl_clamped": clamped,
			"public_key": rec.PublicKey, "issuer": id.Issuer, "machine": id.Machine,
		}}, func(ctx context.Context, b storage.AuditBuilder) (storage.AuditRecord, error) {
			return a.Store.PutCertAudited(ctx, rec, b)
		})
		return err
	}
	ttlUsed, clamped = a.Authority.ClampTTL(ttl, pol.MaxCertTTL(pid))
	iss, err := a.Authority.SignUser(ctx, ca.UserRequest{
		PublicKey: pub, Username: id.Username, Groups: id.Groups, Roles: id.Roles,
		Principals: principals, TTL: ttl, RoleMaxTTL: pol.MaxCertTTL(pid), Record: record,
		PortForwarding: feat.PortForwarding, AgentForwarding: feat.AgentForwarding, X11Forwarding: feat.X11Forwarding,
	})
	if err != nil {
		if errors.Is(err, audit.ErrWrite) {
			a.fail(ctx, w, r, apiErr(http.StatusServiceUnavailable, "the audit log cannot be written; no certificate issued", err), id.Username, "")
			return
		}
		a.fail(ctx, w, r, classify(err), id.Username, reasonBadRequest)
		return
	}
	expires := time.Unix(int64(iss.Cert.ValidBefore), 0).UTC()
	if a.Metrics != nil {
		a.Metrics.CertIssued()
	}
	writeJSON(w, http.StatusOK, certResponse{
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(iss.Cert))),
		HostCA:      ca.AuthorizedKey(a.Authority.Host.PublicKey()),
		Serial:      iss.Serial, ExpiresAt: expires, TTL: iss.TTL.String(), TTLClamped: iss.Clamped,
		Principals: principals, KeyID: iss.Cert.KeyId,
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, apiErr(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxBody), err)
		}
		return nil, apiErr(http.StatusBadRequest, "cannot read request body", err)
	}
	return b, nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON body")
	}
	return nil
}

func (a *API) handleCAKey(host bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k := a.Authority.User.PublicKey()
		if host {
			k = a.Authority.Host.PublicKey()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, ca.AuthorizedKey(k))
	}
}

func (a *API) handleKRL(w http.ResponseWriter, r *http.Request) {
	b, err := a.KRL(r.Context())
	if err != nil {
		writeError(w, classify(err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

func (a *API) handleAuditKey(w http.ResponseWriter, r *http.Request) {
	pub, err := ssh.NewPublicKey(a.AuditKey)
	if err != nil {
		writeError(w, classify(err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, ca.AuthorizedKey(pub))
}

func (a *API) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if a.Ready != nil {
		if err := a.Ready(ctx); err != nil {
			a.Logger.Warn("not ready", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

// authed wraps a handler that needs a CLI caller.
func (a *API) authed(h func(w http.ResponseWriter, r *http.Request, c Caller, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, e := readBody(w, r)
		if e != nil {
			writeError(w, e)
			return
		}
		if a.Auth == nil {
			writeError(w, apiErr(http.StatusUnauthorized, "authentication is not configured", nil))
			return
		}
		c, err := a.Auth(r, body)
		if err != nil {
			a.fail(r.Context(), w, r, apiErr(http.StatusUnauthorized, "authentication failed: log in again with jumpgate login", err), "", "api_auth")
			return
		}
		h(w, r, c, body)
	}
}

func (a *API) handleWhoami(w http.ResponseWriter, r *http.Request, c Caller, _ []byte) {
	pol := a.Policy.Current()
	id := c.PolicyIdentity()
	var roles []string
	for _, ro := range pol.RolesFor(id) {
		roles = append(roles, ro.Name)
	}
	writeJSON(w, 200, map[string]any{
		"user": c.Username, "groups": c.Groups, "roles": roles, "serial": c.Serial,
		"auditor": c.Local || pol.IsAuditor(id), "admin": c.Local || pol.IsAdmin(id), "approver": pol.IsApprover(id),
	})
}

// IsAuditor reports whether c may see everything.
func (a *API) IsAuditor(c Caller) bool {
	return c.Local || a.Policy.Current().IsAuditor(c.PolicyIdentity())
}

// IsAdmin reports whether c may administer the CA.
func (a *API) IsAdmin(c Caller) bool {
	return c.Local || a.Policy.Current().IsAdmin(c.PolicyIdentity())
}

func (a *API) handleAuditList(w http.ResponseWriter, r *http.Request, c Caller, _ []byte) {
	q := r.URL.Query()
	f := audit.Filter{User: q.Get("user"), Type: q.Get("type"), Session: q.Get("session"), Target: q.Get("target")}
	if s := q.Get("since"); s != "" {
		t, err := ParseSince(s, a.now())
		if err != nil {
			writeError(w, apiErr(http.StatusBadRequest, err.Error(), err))
			return
		}
		f.Since = t
	}
	if !a.IsAuditor(c) {
		if f.User != "" && f.User != c.Username {
			writeError(w, apiErr(http.StatusForbidden, "only auditors see other users' events", nil))
			return
		}
		f.User = c.Username
	}
	_, lines, err := audit.List(r.Context(), a.Store, f)
	if err != nil {
		writeError(w, classify(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "[")
	for i, l := range lines {
		if i > 0 {
			_, _ = io.WriteString(w, ",\n")
		}
		_, _ = w.Write(l)
	}
	_, _ = io.WriteString(w, "]\n")
}

// ParseSince reads a duration ("1h": that long ago) or an RFC3339 time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q is neither a duration (1h) nor an RFC3339 time", s)
	}
	return t, nil
}

func (a *API) handleAuditVerify(w http.ResponseWriter, r *http.Request, c Caller, _ []byte) {
	if !a.IsAuditor(c) {
		writeError(w, apiErr(http.StatusForbidden, "only auditors verify the audit log", nil))
		return
	}
	n, err := audit.Verify(r.Context(), a.Store)
	res := map[string]any{"ok": err == nil, "events": n}
	if err != nil {
		res["error"] = err.Error()
	}
	writeJSON(w, 200, res)
}

type revokeRequest struct {
	Serial uint64 `json:"serial"`
	KeyID  string `json:"key_id"`
	Reason string `json:"reason"`
}

func (a *API) handleRevoke(w http.ResponseWriter, r *http.Request, c Caller, body []byte) {
	if !a.IsAdmin(c) {
		writeError(w, apiErr(http.StatusForbidden, "only admins revoke certificates", nil))
		return
	}
	var req revokeRequest
	if err := decodeStrict(body, &req); err != nil || (req.Serial == 0) == (req.KeyID == "") {
		writeError(w, apiErr(http.StatusBadRequest, "give exactly one of serial or key_id", err))
		return
	}
	rev := storage.Revocation{Serial: req.Serial, KeyID: req.KeyID, By: c.Username, Reason: req.Reason, At: a.now().UTC()}
	if _, err := a.Audit.Emit(r.Context(), audit.Event{Type: audit.CertRevoked, User: c.Username, Source: ClientIP(r),
		Details: map[string]any{"serial": req.Serial, "key_id": req.KeyID, "reason": req.Reason}}); err != nil {
		writeError(w, apiErr(http.StatusServiceUnavailable, "the audit log cannot be written; nothing revoked", err))
		return
	}
	if err := a.Revocations.Revoke(r.Context(), rev); err != nil {
		writeError(w, classify(err))
		return
	}
	writeJSON(w, 200, rev)
}

type signHostRequest struct {
	PublicKey  string   `json:"public_key"`
	Principals []string `json:"principals"`
	TTL        string   `json:"ttl"`
}

func (a *API) handleSignHost(w http.ResponseWriter, r *http.Request, c Caller, body []byte) {
	if !a.IsAdmin(c) {
		writeError(w, apiErr(http.StatusForbidden, "only admins sign host keys", nil))
		return
	}
	var req signHostRequest
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, apiErr(http.StatusBadRequest, "body must be {\"public_key\", \"principals\", \"ttl\"}", err))
		return
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		writeError(w, apiErr(http.StatusBadRequest, "public_key must be an OpenSSH public key line", err))
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			writeError(w, apiErr(http.StatusBadRequest, "bad ttl", err))
			return
		}
	}
	cert, err := a.Authority.SignHost(r.Context(), ca.HostRequest{PublicKey: pub, Principals: req.Principals, TTL: ttl})
	if err != nil {
		writeError(w, classify(err))
		return
	}
	if _, err := a.Audit.Emit(r.Context(), audit.Event{Type: audit.HostCertIssued, User: c.Username, Source: ClientIP(r),
		Details: map[string]any{"serial": cert.Serial, "principals": req.Principals, "public_key": ssh.FingerprintSHA256(pub)}}); err != nil {
		writeError(w, apiErr(http.StatusServiceUnavailable, "the audit log cannot be written", err))
		return
	}
	writeJSON(w, 200, map[string]any{"certificate": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))), "serial": cert.Serial})
}
