package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jumpgate/jumpgate/httpapi"
)

//go:embed templates/*.html
var templateFS embed.FS

// staticFS holds the console's CSS and script, and the asciinema-player
// 3.18.0 browser bundle (asciinema-player.min.js and .css, Apache-2.0, from
// the npm package's dist/bundle; its LICENSE is next to them).
//
//go:embed static
var staticFS embed.FS

// ContentSecurityPolicy is sent with every console response. Scripts come
// only from the console's own origin; 'wasm-unsafe-eval' lets the player
// compile its embedded WebAssembly terminal emulator and permits no
// JavaScript eval. There is no 'unsafe-inline' anywhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// recordingCSP is sent with recording data: nothing in it may ever run or
// be rendered as a document.
const recordingCSP = "default-src 'none'; sandbox; frame-ancestors 'none'"

// Defaults of Config.
const (
	DefaultMaxAge      = 8 * time.Hour
	DefaultIdleTimeout = 30 * time.Minute
	// loginTimeout bounds the round trip through the identity provider.
	loginTimeout = 10 * time.Minute
	// maxAuditRows is the most audit events one page shows (newest first).
	maxAuditRows = 500
)

// Config configures a Console.
type Config struct {
	// Issuer is the OIDC issuer URL; ClientID the public client (oidc.client_id).
	Issuer   string
	ClientID string
	// Scopes asked for; default openid, email, profile, groups.
	Scopes []string
	// UsernameClaim and GroupsClaim name the ID token claims (default email, groups).
	UsernameClaim string
	GroupsClaim   string
	// HTTPClient talks to the identity provider (it must trust its TLS
	// certificate). Default http.DefaultClient.
	HTTPClient *http.Client
	// Origin, when set (https://host:port), is the console's public origin
	// for the redirect URI; empty means https://<request Host>.
	Origin string
	// API holds the store, policy, audit log, approval queue and recordings.
	API *httpapi.API
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now; Rand to crypto/rand.Reader.
	Clock func() time.Time
	Rand  io.Reader
	// MaxAge bounds a console login (default 8h); it also ends when the ID
	// token expires. IdleTimeout ends a login unused that long (default 30m).
	MaxAge      time.Duration
	IdleTimeout time.Duration
	// Terminate, when set, lets auditors, approvers and admins end a running
	// session from its page; nil hides the button.
	Terminate func(ctx context.Context, sessionID, by string) error
}

// Console serves the web console.
type Console struct {
	cfg      Config
	log      *slog.Logger
	pages    map[string]*template.Template
	logins   *loginStore
	oidc     *oidcClient
	handler  http.Handler
	static   fs.FS
	csrfSafe *http.CrossOriginProtection
}

// ErrConfig is wrapped by New for an unusable Config.
var ErrConfig = errors.New("web: invalid config")

// New checks cfg and returns a Console.
func New(cfg Config) (*Console, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, fmt.Errorf("%w: issuer and client id are required", ErrConfig)
	}
	if cfg.API == nil || cfg.API.Store == nil || cfg.API.Policy == nil {
		return nil, fmt.Errorf("%w: API with Store and Policy is required", ErrConfig)
	}
	if cfg.Origin != "" && !strings.HasPrefix(cfg.Origin, "https://") {
		return nil, fmt.Errorf("%w: origin %q must be https://host[:port]", ErrConfig, cfg.Origin)
	}
	cfg.Origin = strings.TrimSuffix(cfg.Origin, "/")
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"openid", "email", "profile", "groups"}
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = "email"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	c := &Console{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "web"),
		pages:    pages,
		logins:   newLoginStore(cfg.Clock, cfg.Rand, cfg.MaxAge, cfg.IdleTimeout),
		oidc:     &oidcClient{issuer: cfg.Issuer, clientID: cfg.ClientID, scopes: cfg.Scopes, http: cfg.HTTPClient},
		static:   static,
		csrfSafe: http.NewCrossOriginProtection(),
	}
	c.csrfSafe.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusForbidden, "This request came from another site and was refused.")
	}))
	c.handler = c.routes()
	return c, nil
}

// Handler returns the console's routes; mount it at "/" of the HTTPS mux
// (the JSON API's /v1/ routes are more specific and keep precedence).
func (c *Console) Handler() http.Handler { return c.handler }

func (c *Console) now() time.Time { return c.cfg.Clock() }

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(c.static)))
	mux.HandleFunc("GET /auth/login", c.handleLogin)
	mux.HandleFunc("GET /auth/callback", c.handleCallback)
	mux.HandleFunc("POST /auth/logout", c.post(c.handleLogout))
	mux.HandleFunc("GET /{$}", c.page(func(w http.ResponseWriter, r *http.Request, u *user) {
		http.Redirect(w, r, "/sessions", http.StatusSeeOther)
	}))
	mux.HandleFunc("GET /sessions", c.page(c.handleSessions))
	mux.HandleFunc("GET /sessions/{id}", c.page(c.handleSession))
	mux.HandleFunc("GET /sessions/{id}/recording", c.data(c.handleRecording))
	mux.HandleFunc("POST /sessions/{id}/terminate", c.post(c.handleTerminate))
	mux.HandleFunc("GET /audit", c.page(c.handleAudit))
	mux.HandleFunc("GET /requests", c.page(c.handleRequests))
	mux.HandleFunc("POST /requests/{id}/decide", c.post(c.handleDecide))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u := c.logins.current(r)
		c.errorPage(w, r, u, http.StatusNotFound, "There is no such page.")
	})
	return securityHeaders(mux)
}

// securityHeaders sets the headers every console response carries.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", ContentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

func staticHandler(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// page wraps a handler that needs a signed-in user: without one a browser
// is sent to log in and come back.
func (c *Console) page(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := c.logins.current(r)
		if u == nil {
			http.Redirect(w, r, "/auth/login?next="+queryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r, u)
	}
}

// data wraps a handler for data the player fetches: no login, no redirect.
func (c *Console) data(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := c.logins.current(r)
		if u == nil {
			http.Error(w, "not signed in", http.StatusUnauthorized)
			return
		}
		h(w, r, u)
	}
}

// post wraps a state-changing handler: a signed-in user, a same-origin
// request (Origin / Sec-Fetch-Site) and the login's CSRF token.
func (c *Console) post(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := c.csrfSafe.Check(r); err != nil {
			c.log.Info("cross-origin post refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
			c.errorPage(w, r, nil, http.StatusForbidden, "This request came from another site and was refused.")
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != c.origin(r) {
			c.errorPage(w, r, nil, http.StatusForbidden, "This request came from another site and was refused.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			c.errorPage(w, r, nil, http.StatusBadRequest, "The form could not be read.")
			return
		}
		u := c.logins.current(r)
		if u == nil {
			c.errorPage(w, r, nil, http.StatusUnauthorized, "You are not signed in (or your sign-in expired). Sign in and try again.")
			return
		}
		if !u.checkCSRF(r.PostFormValue("csrf")) {
			c.log.Info("post without a valid csrf token refused", "path", r.URL.Path, "user", u.Username)
			c.errorPage(w, r, u, http.StatusForbidden, "The form was stale or forged (CSRF token mismatch). Reload the page and try again.")
			return
		}
		h(w, r, u)
	}
}

// origin is the console's origin as the browser sees it.
func (c *Console) origin(r *http.Request) string {
	if c.cfg.Origin != "" {
		return c.cfg.Origin
	}
	return "https://" + r.Host
}
