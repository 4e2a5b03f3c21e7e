package login

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Errors of the browser flow that callers (and tests) can tell apart.
var (
	ErrStateMismatch   = errors.New("login: the identity provider's redirect carried the wrong state; refusing it")
	ErrMissingCode     = errors.New("login: the identity provider's redirect carried no authorization code")
	ErrNonceMismatch   = errors.New("login: the ID token's nonce does not match this login")
	ErrNoIDToken       = errors.New("login: the identity provider returned no ID token")
	ErrNoDeviceFlow    = errors.New("login: this server does not offer the device flow; log in with a browser or --id-token-file")
	ErrEmptyTokenFile  = errors.New("login: the ID token file is empty")
	ErrLoginTimeout    = errors.New("login: timed out waiting for the browser login")
	ErrProviderRefused = errors.New("login: the identity provider refused the login")
)

// DefaultBrowserTimeout bounds the wait for the loopback redirect.
const DefaultBrowserTimeout = 5 * time.Minute

// BrowserOptions tune the authorization code + PKCE flow.
type BrowserOptions struct {
	// Out receives the authorization URL and progress messages.
	Out io.Writer
	// OpenBrowser is asked to show the URL to the user; nil means
	// OpenSystemBrowser. Its failure is only a message: the URL is printed
	// anyway. It must return (a browser that blocks is fine as long as the
	// redirect reaches the loopback listener).
	OpenBrowser func(ctx context.Context, url string) error
	// Timeout bounds the wait for the redirect; default
	// DefaultBrowserTimeout.
	Timeout time.Duration
	// Rand is the source of state, nonce and PKCE verifier; default
	// crypto/rand.Reader.
	Rand io.Reader
	// Now is the clock used to check the ID token; default time.Now.
	Now func() time.Time
}

// OIDCSettings are what the token flows need besides the HTTP client.
type OIDCSettings struct {
	Issuer   string
	ClientID string
	Scopes   []string
}

func settingsFrom(cfg ServerConfig, scopes []string) OIDCSettings {
	s := OIDCSettings{Issuer: cfg.Issuer, ClientID: cfg.ClientID, Scopes: cfg.Scopes}
	if len(scopes) > 0 {
		s.Scopes = scopes
	}
	if len(s.Scopes) == 0 {
		s.Scopes = DefaultScopes
	}
	return s
}

func (s OIDCSettings) validate() error {
	if s.Issuer == "" || s.ClientID == "" {
		return errors.New("login: the server advertises no OIDC issuer or client id")
	}
	return nil
}

// provider runs OIDC discovery of the issuer with hc.
func (s OIDCSettings) provider(ctx context.Context, hc *http.Client) (*oidc.Provider, context.Context, error) {
	if err := s.validate(); err != nil {
		return nil, ctx, err
	}
	ctx = oidc.ClientContext(ctx, hc)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	p, err := oidc.NewProvider(ctx, s.Issuer)
	if err != nil {
		return nil, ctx, fmt.Errorf("login: OIDC discovery of %s: %w", s.Issuer, err)
	}
	return p, ctx, nil
}

func randomString(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("login: randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// callbackResult is what the loopback handler hands to the waiting flow.
type callbackResult struct {
	code string
	err  error
}

// BrowserToken runs the authorization code flow with PKCE (S256) through a
// loopback redirect (http://127.0.0.1:PORT/callback) and returns the
// verified raw ID token.
func BrowserToken(ctx context.Context, hc *http.Client, s OIDCSettings, opts BrowserOptions) (string, error) {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultBrowserTimeout
	}
	open := opts.OpenBrowser
	if open == nil {
		open = OpenSystemBrowser
	}

	provider, ctx, err := s.provider(ctx, hc)
	if err != nil {
		return "", err
	}
	state, err := randomString(rnd, 32)
	if err != nil {
		return "", err
	}
	nonce, err := randomString(rnd, 32)
	if err != nil {
		return "", err
	}
	// Same shape as oauth2.GenerateVerifier, from the injectable source.
	verifier, err := randomString(rnd, 32)
	if err != nil {
		return "", err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("login: loopback listener: %w", err)
	}
	conf := &oauth2.Config{
		ClientID:    s.ClientID,
		Endpoint:    provider.Endpoint(),
		RedirectURL: fmt.Sprintf("http://%s/callback", ln.Addr().String()),
		Scopes:      s.Scopes,
	}

	results := make(chan callbackResult, 1)
	var once sync.Once
	deliver := func(r callbackResult) { once.Do(func() { results <- r }) }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		res := callbackResult{code: q.Get("code")}
		switch {
		case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
			res.err = ErrStateMismatch
		case q.Get("error") != "":
			res.err = fmt.Errorf("%w: %s", ErrProviderRefused, oneLine(q.Get("error")+" "+q.Get("error_description")))
		case res.code == "":
			res.err = ErrMissingCode
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if res.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "<!doctype html><title>jumpgate login failed</title><p>jumpgate login failed: %s</p>", html.EscapeString(res.err.Error()))
		} else {
			fmt.Fprint(w, "<!doctype html><title>jumpgate login</title><p>You are logged in to jumpgate. You can close this window.</p>")
		}
		deliver(res)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	defer func() {
		_ = srv.Close()
		wg.Wait()
	}()

	authURL := conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	fmt.Fprintf(out, "Open this URL in a browser to log in:\n\n    %s\n\n", authURL)
	if err := open(ctx, authURL); err != nil {
		fmt.Fprintf(out, "Could not open a browser (%v); open the URL above yourself.\n", err)
	}

	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var res callbackResult
	select {
	case res = <-results:
	case <-waitCtx.Done():
		if ctx.Err() != nil {
			return "", fmt.Errorf("login: %w", ctx.Err())
		}
		return "", ErrLoginTimeout
	}
	if res.err != nil {
		return "", res.err
	}

	tok, err := conf.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return "", fmt.Errorf("login: exchange the authorization code: %w", err)
	}
	raw, err := verifyIDToken(ctx, provider, s, tok, opts.Now)
	if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare([]byte(raw.Nonce), []byte(nonce)) != 1 {
		return "", ErrNonceMismatch
	}
	return raw.raw, nil
}

type verifiedToken struct {
	raw   string
	Nonce string
}

func verifyIDToken(ctx context.Context, p *oidc.Provider, s OIDCSettings, tok *oauth2.Token, now func() time.Time) (verifiedToken, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return verifiedToken{}, ErrNoIDToken
	}
	v := p.Verifier(&oidc.Config{ClientID: s.ClientID, Now: now})
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		return verifiedToken{}, fmt.Errorf("login: ID token: %w", err)
	}
	return verifiedToken{raw: raw, Nonce: idt.Nonce}, nil
}

// DeviceOptions tune the device authorization flow.
type DeviceOptions struct {
	// Out receives the verification URI and user code.
	Out io.Writer
	// Now is the clock used to check the ID token; default time.Now.
	Now func() time.Time
}

// DeviceToken runs the OAuth 2.0 device authorization grant (RFC 8628):
// it prints where to go and which code to enter, polls the token endpoint
// until the user approves (or ctx ends, or the code expires) and returns
// the verified raw ID token.
func DeviceToken(ctx context.Context, hc *http.Client, s OIDCSettings, opts DeviceOptions) (string, error) {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	provider, ctx, err := s.provider(ctx, hc)
	if err != nil {
		return "", err
	}
	conf := &oauth2.Config{ClientID: s.ClientID, Endpoint: provider.Endpoint(), Scopes: s.Scopes}
	if conf.Endpoint.DeviceAuthURL == "" {
		return "", fmt.Errorf("%w (the identity provider has no device_authorization_endpoint)", ErrNoDeviceFlow)
	}
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return "", fmt.Errorf("login: device authorization: %w", err)
	}
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "To log in, open\n\n    %s\n\nand check that it shows the code %s\n\n", da.VerificationURIComplete, da.UserCode)
	} else {
		fmt.Fprintf(out, "To log in, open\n\n    %s\n\nand enter the code %s\n\n", da.VerificationURI, da.UserCode)
	}
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return "", fmt.Errorf("login: device login: %w", err)
	}
	raw, err := verifyIDToken(ctx, provider, s, tok, opts.Now)
	if err != nil {
		return "", err
	}
	return raw.raw, nil
}

// TokenFromFile reads an ID token for automation (CI), trimming whitespace.
// The token is not verified here: the server verifies it, and it may come
// from a machine-identity issuer the CLI knows nothing about.
func TokenFromFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("login: ID token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", ErrEmptyTokenFile
	}
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("login: ID token file %s does not hold one JWT", path)
	}
	return tok, nil
}

// OpenSystemBrowser starts $BROWSER (a colon-separated list; "%s" is
// replaced by the URL) or the platform opener (xdg-open, open) without
// waiting for it. An error only means the user must open the URL by hand.
func OpenSystemBrowser(ctx context.Context, url string) error {
	var candidates [][]string
	if b := os.Getenv("BROWSER"); b != "" {
		for _, c := range strings.Split(b, ":") {
			f := strings.Fields(c)
			if len(f) == 0 {
				continue
			}
			replaced := false
			for i, a := range f {
				if strings.Contains(a, "%s") {
					f[i] = strings.ReplaceAll(a, "%s", url)
					replaced = true
				}
			}
			if !replaced {
				f = append(f, url)
			}
			candidates = append(candidates, f)
		}
	}
	switch runtime.GOOS {
	case "darwin":
		candidates = append(candidates, []string{"open", url})
	case "windows":
		candidates = append(candidates, []string{"rundll32", "url.dll,FileProtocolHandler", url})
	default:
		candidates = append(candidates, []string{"xdg-open", url})
	}
	var errs []error
	for _, c := range candidates {
		path, err := exec.LookPath(c[0])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cmd := exec.Command(path, c[1:]...)
		if err := cmd.Start(); err != nil {
			errs = append(errs, err)
			continue
		}
		// The browser outlives this call (and possibly the CLI): let go of
		// it rather than keep a goroutine waiting for it.
		return cmd.Process.Release()
	}
	return fmt.Errorf("login: no browser: %w", errors.Join(errs...))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
