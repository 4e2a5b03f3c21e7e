package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/jumpgate/jumpgate/httpapi"
)

// Cookie names. The __Host- prefix makes the browser insist on Secure,
// Path=/ and no Domain, so no sibling host can plant or read them.
const (
	sessionCookie = "__Host-jg_console"
	loginCookie   = "__Host-jg_login"
)

// user is a signed-in console user, from a verified ID token.
type user struct {
	Username string
	Groups   []string
	csrf     string
	expires  time.Time // absolute end: min(login+MaxAge, ID token expiry)
	lastSeen time.Time
}

// caller is the identity the API's visibility rules take.
func (u *user) caller() httpapi.Caller {
	return httpapi.Caller{Username: u.Username, Groups: u.Groups}
}

func (u *user) checkCSRF(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(u.csrf)) == 1
}

// maxPendingLogins bounds logins waiting at the identity provider, so a
// flood of /auth/login requests cannot grow memory without limit.
const maxPendingLogins = 10000

// ErrBusy is returned when too many logins are pending.
var ErrBusy = errors.New("web: too many logins in progress")

// pendingLogin is a login on its way through the identity provider.
type pendingLogin struct {
	state, nonce, verifier, next, redirectURI string
	expires                                   time.Time
}

// loginStore keeps console logins and pending logins in memory.
type loginStore struct {
	clock func() time.Time
	rand  io.Reader

	mu           sync.Mutex
	users        map[string]*user
	pending      map[string]*pendingLogin
	maxAge, idle time.Duration
}

func newLoginStore(clock func() time.Time, r io.Reader, maxAge, idle time.Duration) *loginStore {
	if r == nil {
		r = rand.Reader
	}
	return &loginStore{clock: clock, rand: r, users: map[string]*user{}, pending: map[string]*pendingLogin{},
		maxAge: maxAge, idle: idle}
}

// token returns 256 random bits, base64url.
func (s *loginStore) token() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", fmt.Errorf("web: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// gcLocked drops expired entries.
func (s *loginStore) gcLocked(now time.Time) {
	for k, u := range s.users {
		if !s.alive(u, now) {
			delete(s.users, k)
		}
	}
	for k, p := range s.pending {
		if !now.Before(p.expires) {
			delete(s.pending, k)
		}
	}
}

func (s *loginStore) alive(u *user, now time.Time) bool {
	return now.Before(u.expires) && now.Before(u.lastSeen.Add(s.idle))
}

// current returns the signed-in user of r, refreshing its idle timer, or nil.
func (s *loginStore) current(r *http.Request) *user {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[ck.Value]
	if !ok {
		return nil
	}
	if !s.alive(u, now) {
		delete(s.users, ck.Value)
		return nil
	}
	u.lastSeen = now
	cp := *u
	return &cp
}

func (s *loginStore) startLogin(p *pendingLogin) (string, error) {
	id, err := s.token()
	if err != nil {
		return "", err
	}
	now := s.clock()
	p.expires = now.Add(loginTimeout)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gcLocked(now)
	if len(s.pending) >= maxPendingLogins {
		return "", ErrBusy
	}
	s.pending[id] = p
	return id, nil
}

// takeLogin removes and returns a pending login (each is usable once).
func (s *loginStore) takeLogin(id string) (*pendingLogin, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[id]
	delete(s.pending, id)
	if !ok || !s.clock().Before(p.expires) {
		return nil, false
	}
	return p, true
}

func (s *loginStore) signIn(username string, groups []string, tokenExpiry time.Time) (id string, u *user, err error) {
	if id, err = s.token(); err != nil {
		return "", nil, err
	}
	csrf, err := s.token()
	if err != nil {
		return "", nil, err
	}
	now := s.clock()
	exp := now.Add(s.maxAge)
	if !tokenExpiry.IsZero() && tokenExpiry.Before(exp) {
		exp = tokenExpiry
	}
	u = &user{Username: username, Groups: groups, csrf: csrf, expires: exp, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gcLocked(now)
	s.users[id] = u
	return id, u, nil
}

func (s *loginStore) signOut(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, id)
}

// oidcClient discovers the provider lazily: the issuer may be served by
// the very server that mounts the console and not listen yet at New.
type oidcClient struct {
	issuer, clientID string
	scopes           []string
	http             *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
}

func (o *oidcClient) get(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.http), o.issuer)
	if err != nil {
		return nil, fmt.Errorf("web: oidc discovery of %s: %w", o.issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *oidcClient) oauth2(p *oidc.Provider, redirectURI string) *oauth2.Config {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams // a public client: client_id in the form, no secret
	return &oauth2.Config{ClientID: o.clientID, Endpoint: ep, RedirectURL: redirectURI, Scopes: o.scopes}
}

func (c *Console) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode}
}

// SafeNext returns next if it is a path on this site, else "/sessions".
// It refuses anything a browser could resolve to another origin:
// scheme-relative "//host", backslashes, control characters and absolute URLs.
func SafeNext(next string) string {
	const home = "/sessions"
	if next == "" || len(next) > 2048 || next[0] != '/' {
		return home
	}
	if strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\") {
		return home
	}
	for _, r := range next {
		if r < 0x20 || r == 0x7f {
			return home
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.IsAbs() || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return home
	}
	if strings.HasPrefix(u.Path, "/auth/") {
		return home
	}
	return next
}

func queryEscape(s string) string { return url.QueryEscape(s) }

func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	next := SafeNext(r.URL.Query().Get("next"))
	if c.logins.current(r) != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	p, err := c.oidc.get(r.Context())
	if err != nil {
		c.log.Error("oidc discovery failed", "err", err)
		c.errorPage(w, r, nil, http.StatusServiceUnavailable, "The identity provider cannot be reached; try again shortly.")
		return
	}
	pl := &pendingLogin{next: next, redirectURI: c.origin(r) + "/auth/callback", verifier: oauth2.GenerateVerifier()}
	if pl.state, err = c.logins.token(); err == nil {
		pl.nonce, err = c.logins.token()
	}
	var id string
	if err == nil {
		id, err = c.logins.startLogin(pl)
	}
	if errors.Is(err, ErrBusy) {
		c.log.Warn("login refused", "err", err)
		c.errorPage(w, r, nil, http.StatusServiceUnavailable, "Too many sign-ins are in progress; try again in a few minutes.")
		return
	}
	if err != nil {
		c.log.Error("start login", "err", err)
		c.errorPage(w, r, nil, http.StatusInternalServerError, "Sign-in could not start.")
		return
	}
	http.SetCookie(w, c.cookie(loginCookie, id, int(loginTimeout/time.Second)))
	authURL := c.oidc.oauth2(p, pl.redirectURI).AuthCodeURL(pl.state, oidc.Nonce(pl.nonce), oauth2.S256ChallengeOption(pl.verifier))
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// errLogin is a callback that cannot complete; its text is logged, the
// user sees a fixed sentence.
var errLogin = errors.New("web: login failed")

func (c *Console) handleCallback(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, c.cookie(loginCookie, "", -1))
	u, next, err := c.completeLogin(r)
	if err != nil {
		c.log.Info("console login failed", "err", err)
		c.errorPage(w, r, nil, http.StatusUnauthorized, "Sign-in failed. Start again from the login link.")
		return
	}
	id, nu, err := c.logins.signIn(u.Username, u.Groups, u.expires)
	if err != nil {
		c.log.Error("sign in", "err", err)
		c.errorPage(w, r, nil, http.StatusInternalServerError, "Sign-in failed.")
		return
	}
	c.log.Info("console login", "user", nu.Username, "groups", nu.Groups, "until", nu.expires)
	http.SetCookie(w, c.cookie(sessionCookie, id, 0))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// completeLogin checks state, trades the code (with the PKCE verifier),
// verifies the ID token and its nonce and extracts the identity.
func (c *Console) completeLogin(r *http.Request) (*user, string, error) {
	ck, err := r.Cookie(loginCookie)
	if err != nil {
		return nil, "", fmt.Errorf("%w: no login cookie", errLogin)
	}
	pl, ok := c.logins.takeLogin(ck.Value)
	if !ok {
		return nil, "", fmt.Errorf("%w: unknown or expired login", errLogin)
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pl.state)) != 1 {
		return nil, "", fmt.Errorf("%w: state mismatch", errLogin)
	}
	if e := q.Get("error"); e != "" {
		return nil, "", fmt.Errorf("%w: provider answered %q", errLogin, e)
	}
	code := q.Get("code")
	if code == "" {
		return nil, "", fmt.Errorf("%w: no code", errLogin)
	}
	ctx := oidc.ClientContext(r.Context(), c.cfg.HTTPClient)
	p, err := c.oidc.get(ctx)
	if err != nil {
		return nil, "", err
	}
	tok, err := c.oidc.oauth2(p, pl.redirectURI).Exchange(context.WithValue(ctx, oauth2.HTTPClient, c.cfg.HTTPClient), code, oauth2.VerifierOption(pl.verifier))
	if err != nil {
		return nil, "", fmt.Errorf("%w: code exchange: %w", errLogin, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, "", fmt.Errorf("%w: no id_token in the token response", errLogin)
	}
	idt, err := p.VerifierContext(ctx, &oidc.Config{ClientID: c.cfg.ClientID, Now: c.now}).Verify(ctx, raw)
	if err != nil {
		return nil, "", fmt.Errorf("%w: id token: %w", errLogin, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pl.nonce)) != 1 {
		return nil, "", fmt.Errorf("%w: nonce mismatch", errLogin)
	}
	u, err := identityFromClaims(idt, c.cfg.UsernameClaim, c.cfg.GroupsClaim)
	if err != nil {
		return nil, "", err
	}
	return u, pl.next, nil
}

func identityFromClaims(idt *oidc.IDToken, usernameClaim, groupsClaim string) (*user, error) {
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", errLogin, err)
	}
	if ev, ok := claims["email_verified"]; ok {
		if b, ok := ev.(bool); !ok || !b {
			return nil, fmt.Errorf("%w: email not verified", errLogin)
		}
	}
	name, _ := claims[usernameClaim].(string)
	if usernameClaim == "sub" {
		name = idt.Subject
	}
	if name == "" || len(name) > 256 || strings.ContainsAny(name, "/\x00\n\r ,") {
		return nil, fmt.Errorf("%w: claim %q is missing or not a usable username", errLogin, usernameClaim)
	}
	u := &user{Username: name, expires: idt.Expiry}
	switch g := claims[groupsClaim].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				u.Groups = append(u.Groups, s)
			}
		}
	case string:
		u.Groups = []string{g}
	}
	return u, nil
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request, u *user) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.logins.signOut(ck.Value)
	}
	http.SetCookie(w, c.cookie(sessionCookie, "", -1))
	c.log.Info("console logout", "user", u.Username)
	c.render(w, r, nil, http.StatusOK, "signedout", nil)
}
