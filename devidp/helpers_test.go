package devidp

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const testClientID = "jumpgate"

// fakeClock is the injected Clock of the tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testIdP is a provider served over TLS on 127.0.0.1 at a runtime port,
// mounted below /dev-idp like `jumpgate dev` mounts it.
type testIdP struct {
	p      *Provider
	srv    *httptest.Server
	clock  *fakeClock
	issuer string
	client *http.Client
}

func defaultTestClients() []Client {
	return []Client{{
		ID:           testClientID,
		RedirectURIs: []string{"http://127.0.0.1/callback", "https://console.example/auth/callback"},
	}}
}

func newTestIdP(t *testing.T, mutate func(*Config)) *testIdP {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	var provider *Provider
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	srv := httptest.NewUnstartedServer(mux)
	issuer := "https://" + srv.Listener.Addr().String() + "/dev-idp"
	cfg := Config{
		Issuer:             issuer,
		Users:              DemoUsers(),
		Clients:            defaultTestClients(),
		Clock:              clock.Now,
		DevicePollInterval: time.Second,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	provider, err := New(cfg)
	if err != nil {
		srv.Close()
		t.Fatalf("New: %v", err)
	}
	mux.Handle("/dev-idp/", provider.Handler())
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &testIdP{p: provider, srv: srv, clock: clock, issuer: issuer, client: srv.Client()}
}

// ctx returns a context whose go-oidc and oauth2 HTTP client trusts the
// test server's certificate.
func (ti *testIdP) ctx(t *testing.T) context.Context {
	ctx := oidc.ClientContext(t.Context(), ti.client)
	return context.WithValue(ctx, oauth2.HTTPClient, ti.client)
}

// rp is the relying party side, set up the way jumpgate sets it up.
type rp struct {
	provider *oidc.Provider
	config   oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func (ti *testIdP) rp(t *testing.T, redirectURL string) *rp {
	t.Helper()
	provider, err := oidc.NewProvider(ti.ctx(t), ti.issuer)
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	ep := provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams // public client: no secret
	return &rp{
		provider: provider,
		config: oauth2.Config{
			ClientID:    testClientID,
			Endpoint:    ep,
			RedirectURL: redirectURL,
			Scopes:      []string{oidc.ScopeOpenID, "email", "profile", "groups"},
		},
		verifier: provider.Verifier(&oidc.Config{ClientID: testClientID}),
	}
}

// loopbackRedirect returns http://HOST:PORT/PATH with a port that a real
// listener holds for the duration of the test, as `jumpgate login` does.
func loopbackRedirect(t *testing.T, host, path string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + path
}

// login runs the browser part of the code flow and returns the code.
func (r *rp) login(t *testing.T, ti *testIdP, user, password, verifier, state string) string {
	t.Helper()
	authURL := r.config.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-"+state))
	redirect, err := BrowserLogin(ti.ctx(t), ti.client, authURL, user, password)
	if err != nil {
		t.Fatalf("BrowserLogin: %v", err)
	}
	u, err := url.Parse(redirect)
	if err != nil {
		t.Fatalf("redirect %q: %v", redirect, err)
	}
	want, _ := url.Parse(r.config.RedirectURL)
	if u.Scheme != want.Scheme || u.Host != want.Host || u.Path != want.Path {
		t.Fatalf("redirected to %q, want %q", redirect, r.config.RedirectURL)
	}
	if got := u.Query().Get("state"); got != state {
		t.Fatalf("state = %q, want %q", got, state)
	}
	code := u.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %q", redirect)
	}
	return code
}

type idClaims struct {
	Sub               string   `json:"sub"`
	Email             string   `json:"email"`
	EmailVerified     bool     `json:"email_verified"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
	Nonce             string   `json:"nonce"`
	Exp               int64    `json:"exp"`
	Iat               int64    `json:"iat"`
}

// tokenEndpointError posts form to the token endpoint once (no polling) and
// returns the OAuth error code ("" on success).
func (ti *testIdP) tokenEndpointError(t *testing.T, tokenURL string, form url.Values) string {
	t.Helper()
	resp, err := ti.client.PostForm(tokenURL, form)
	if err != nil {
		t.Fatalf("token endpoint: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token endpoint answer: %v", err)
	}
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	return body.Error
}

func getBody(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", u, err)
	}
	return resp, string(b)
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
