package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func TestPagesShowBannerAndEscape(t *testing.T) {
	ti := newTestIdP(t, nil)
	evil := `<script>alert("x")</script>`
	tests := []struct {
		name   string
		do     func() (*http.Response, string)
		status int
	}{
		{"device page reflects the code escaped", func() (*http.Response, string) {
			return getBody(t, ti.client, ti.p.DeviceVerificationURI()+"?user_code="+url.QueryEscape(evil))
		}, http.StatusOK},
		{"device POST reflects the username escaped", func() (*http.Response, string) {
			resp, err := ti.client.PostForm(ti.p.DeviceVerificationURI(), url.Values{"user_code": {evil}, "username": {evil}, "password": {"x"}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp, string(b)
		}, http.StatusNotFound},
		{"login page for an unknown request", func() (*http.Response, string) {
			return getBody(t, ti.client, ti.issuer+PathLogin+"?authRequestID="+url.QueryEscape(evil))
		}, http.StatusNotFound},
		{"logged-out page", func() (*http.Response, string) {
			return getBody(t, ti.client, ti.issuer+"/end_session")
		}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.do()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(body, "DEVELOPMENT IdP — do not use in production") {
				t.Errorf("banner missing: %s", body)
			}
			if strings.Contains(body, "<script>") {
				t.Errorf("unescaped input in page: %s", body)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("CSP = %q", csp)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}
		})
	}
}

func TestLoginPageShowsForm(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	resp, body := getBody(t, ti.client, r.config.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/dev-idp/login" {
		t.Fatalf("authorize led to %d %s", resp.StatusCode, resp.Request.URL)
	}
	id := resp.Request.URL.Query().Get(FieldAuthRequestID)
	if !containsAll(body, `name="authRequestID" value="`+id+`"`, `name="username"`, `name="password"`, `type="password"`,
		"<code>jumpgate</code>", "<code>groups</code>", "DEVELOPMENT IdP") {
		t.Errorf("login page: %s", body)
	}
}

func TestCrossOriginFormPostRefused(t *testing.T) {
	ti := newTestIdP(t, nil)
	tests := []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"cross-site fetch metadata", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"foreign Origin", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"same-origin browser", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusNotFound},
		{"no browser headers (curl)", nil, http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"user_code": {"BCDF-GHJK"}, "username": {"alice"}, "password": {DemoPassword("alice")}}
			req, _ := http.NewRequest(http.MethodPost, ti.p.DeviceVerificationURI(), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := ti.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestHandlerMountedAtIssuerPath(t *testing.T) {
	ti := newTestIdP(t, nil)
	h := ti.p.Handler()
	tests := []struct {
		path string
		want int
	}{
		{"/dev-idp/.well-known/openid-configuration", http.StatusOK},
		{"/dev-idp/keys", http.StatusOK},
		{"/dev-idp/device", http.StatusOK},
		{"/.well-known/openid-configuration", http.StatusNotFound},
		{"/other/keys", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+tc.path, nil))
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
		})
	}
}

func TestRootIssuerAndHTTPLoopback(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	issuer := "http://" + srv.Listener.Addr().String()
	p, err := New(Config{Issuer: issuer, Users: DemoUsers(), Clients: defaultTestClients()})
	if err != nil {
		srv.Close()
		t.Fatalf("New: %v", err)
	}
	mux.Handle("/", p.Handler())
	srv.Start()
	t.Cleanup(srv.Close)
	ti := &testIdP{p: p, srv: srv, issuer: issuer, client: srv.Client()}
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	verifier := oauth2.GenerateVerifier()
	code := r.login(t, ti, "dave", DemoPassword("dave"), verifier, "root")
	tok, err := r.config.Exchange(ti.ctx(t), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if _, err := r.verifier.Verify(ti.ctx(t), tok.Extra("id_token").(string)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := p.DeviceVerificationURI(); got != issuer+"/device" {
		t.Errorf("DeviceVerificationURI = %q", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := func() Config {
		return Config{Issuer: "https://127.0.0.1:8443/dev-idp", Users: DemoUsers(), Clients: defaultTestClients()}
	}
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"empty issuer", func(c *Config) { c.Issuer = "" }},
		{"http on a public host", func(c *Config) { c.Issuer = "http://idp.example.com/dev-idp" }},
		{"ftp issuer", func(c *Config) { c.Issuer = "ftp://127.0.0.1/x" }},
		{"issuer with query", func(c *Config) { c.Issuer = "https://127.0.0.1/dev-idp?x=1" }},
		{"issuer with fragment", func(c *Config) { c.Issuer = "https://127.0.0.1/dev-idp#x" }},
		{"issuer with user", func(c *Config) { c.Issuer = "https://u:p@127.0.0.1/dev-idp" }},
		{"relative issuer", func(c *Config) { c.Issuer = "/dev-idp" }},
		{"no users", func(c *Config) { c.Users = nil }},
		{"duplicate user", func(c *Config) { c.Users = append(c.Users, c.Users[0]) }},
		{"username with colon", func(c *Config) { c.Users[0].Username = "a:b" }},
		{"username with space", func(c *Config) { c.Users[0].Username = "a b" }},
		{"empty password", func(c *Config) { c.Users[0].Password = "" }},
		{"no clients", func(c *Config) { c.Clients = nil }},
		{"duplicate client", func(c *Config) { c.Clients = append(c.Clients, c.Clients[0]) }},
		{"empty client id", func(c *Config) { c.Clients[0].ID = "" }},
		{"relative redirect", func(c *Config) { c.Clients[0].RedirectURIs = []string{"/callback"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mutate(&cfg)
			if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

func TestSigningKeyFilePersists(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "idp-key.pem")
	ti := newTestIdP(t, func(c *Config) { c.SigningKeyFile = keyFile })
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("key file not created: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}

	// A token minted before a "restart" verifies with the key loaded after it.
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	verifier := oauth2.GenerateVerifier()
	code := r.login(t, ti, "alice", DemoPassword("alice"), verifier, "k")
	tok, err := r.config.Exchange(ti.ctx(t), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	restarted, err := New(Config{Issuer: ti.issuer, Users: DemoUsers(), Clients: defaultTestClients(), SigningKeyFile: keyFile})
	if err != nil {
		t.Fatalf("New after restart: %v", err)
	}
	if restarted.store.key.id != ti.p.store.key.id {
		t.Errorf("kid changed across restarts: %q → %q", ti.p.store.key.id, restarted.store.key.id)
	}
	ks := &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{restarted.store.key.priv.Public()}}
	v := oidc.NewVerifier(ti.issuer, ks, &oidc.Config{ClientID: testClientID})
	if _, err := v.Verify(t.Context(), tok.Extra("id_token").(string)); err != nil {
		t.Fatalf("token from before the restart: %v", err)
	}

	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Issuer: ti.issuer, Users: DemoUsers(), Clients: defaultTestClients(), SigningKeyFile: keyFile}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("world-readable key accepted: %v", err)
	}
}

func TestSigningKeyFileEC(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "ec.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	ti := newTestIdP(t, func(c *Config) { c.SigningKeyFile = keyFile })
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	verifier := oauth2.GenerateVerifier()
	code := r.login(t, ti, "bob", DemoPassword("bob"), verifier, "ec")
	tok, err := r.config.Exchange(ti.ctx(t), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	// go-oidc learns ES256 from discovery.
	if _, err := r.verifier.Verify(ti.ctx(t), tok.Extra("id_token").(string)); err != nil {
		t.Fatalf("Verify ES256: %v", err)
	}
}

func TestParseSigningKeyRejects(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKCS8PrivateKey(p384)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not PEM", []byte("hello")},
		{"public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}})},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})},
		{"P-384", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der384})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseSigningKey(tc.data); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("parseSigningKey = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestDemoUsers(t *testing.T) {
	want := map[string][]string{"alice": {"engineering"}, "bob": {"dba", "engineering"}, "carol": {"security"}, "dave": {"sre-leads"}}
	users := DemoUsers()
	if len(users) != len(want) {
		t.Fatalf("%d demo users, want %d", len(users), len(want))
	}
	for _, u := range users {
		if strings.Join(u.Groups, ",") != strings.Join(want[u.Username], ",") {
			t.Errorf("%s groups %v, want %v", u.Username, u.Groups, want[u.Username])
		}
		if !strings.Contains(u.Password, "dev-only") || u.Password != DemoPassword(u.Username) {
			t.Errorf("%s password %q is not marked dev-only", u.Username, u.Password)
		}
	}
}

func TestNormalizeUserCode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"BCDF-GHJK", "BCDFGHJK"},
		{"bcdf ghjk", "BCDFGHJK"},
		{" b-c-d-f\tg h j k ", "BCDFGHJK"},
		{"<é>", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := normalizeUserCode(tc.in); got != tc.want {
				t.Fatalf("normalizeUserCode(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
