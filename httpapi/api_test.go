package httpapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/ca"
	"github.com/jumpgate/jumpgate/identity"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage/boltstore"
)

// fakeIdP serves OIDC discovery and a JWKS and signs tokens. A fake is
// right here: these unit tests need tokens no real IdP would issue
// (expired, foreign audience, unknown key, alg none); the real flow is
// covered end to end with the dev IdP in test/.
type fakeIdP struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey // kid → key published in the JWKS
	down bool
}

func newFakeIdP(t testing.TB) *fakeIdP {
	f := &fakeIdP{keys: map[string]*rsa.PrivateKey{}}
	f.addKey(t, "k1")
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if f.isDown() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/jwks",
			"authorization_endpoint": f.srv.URL + "/auth", "token_endpoint": f.srv.URL + "/token", "id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		if f.isDown() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		f.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range f.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		f.mu.Unlock()
		json.NewEncoder(w).Encode(set)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) isDown() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.down }

func (f *fakeIdP) addKey(t testing.TB, kid string) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.keys[kid] = k
	f.mu.Unlock()
	return k
}

type claims map[string]any

func (f *fakeIdP) base(user string, groups ...string) claims {
	now := time.Now()
	return claims{"iss": f.srv.URL, "aud": "jumpgate", "sub": user, "email": user + "@example.com", "email_verified": true,
		"groups": groups, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix()}
}

func (f *fakeIdP) sign(t testing.TB, c claims, kid string, key *rsa.PrivateKey) string {
	if key == nil {
		f.mu.Lock()
		key = f.keys[kid]
		f.mu.Unlock()
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(map[string]any(c)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

const testPolicy = `
roles:
  - name: dev
    groups: [engineering]
    logins: [ubuntu]
    targets: {labels: {env: staging}}
  - name: readers
    groups: [readers]
    targets: {names: [db]}
admins: [{groups: [admins]}]
`

type apiEnv struct {
	api   *API
	h     http.Handler
	idp   *fakeIdP
	store *boltstore.Store
	logs  *bytes.Buffer
}

func newAPIEnv(t testing.TB) *apiEnv {
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	u, _ := ca.LoadOrCreateKey(ctx, filepath.Join(dir, "u"), st, "u")
	h, _ := ca.LoadOrCreateKey(ctx, filepath.Join(dir, "h"), st, "h")
	rev, _ := ca.NewRevocations(ctx, st)
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	idp := newFakeIdP(t)
	ver, err := identity.New(nil, identity.Issuer{URL: idp.srv.URL, Audience: "jumpgate"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ps := policy.Static(pol)
	al := audit.New(st, nil, logger)
	_, pub, _ := ed25519.GenerateKey(rand.Reader)
	_ = pub
	a := &API{
		Authority:   &ca.Authority{User: u, Host: h, Store: st, DefaultTTL: 10 * time.Minute, MaxTTL: time.Hour},
		Revocations: rev, Tokens: ver, Policy: ps, Audit: al, Store: st, Logger: logger, RateLimit: 600,
		KRL:       func(context.Context) ([]byte, error) { return []byte("krl"), nil },
		Approvals: &approvals.Queue{Store: st, Audit: al, Policy: ps},
	}
	return &apiEnv{api: a, h: a.Handler(), idp: idp, store: st, logs: logs}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func edKey(t testing.TB) string {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func (e *apiEnv) post(t testing.TB, token string, body any) *httptest.ResponseRecorder {
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	default:
		b, _ = json.Marshal(v)
	}
	req := httptest.NewRequest("POST", "/v1/ssh/certificates", bytes.NewReader(b))
	req.RemoteAddr = "192.0.2.10:5555"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func TestCertificateIssued(t *testing.T) {
	e := newAPIEnv(t)
	tok := e.idp.sign(t, e.idp.base("alice", "engineering"), "k1", nil)
	rec := e.post(t, tok, map[string]string{"public_key": edKey(t), "ttl": "5h"})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var res certResponse
	json.Unmarshal(rec.Body.Bytes(), &res)
	if !res.TTLClamped || res.TTL != "1h0m0s" {
		t.Fatalf("ttl not clamped: %+v", res)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(res.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	c := pk.(*ssh.Certificate)
	if c.KeyId != fmt.Sprintf("alice@example.com/%d", res.Serial) || strings.Join(c.ValidPrincipals, ",") != "ubuntu" {
		t.Fatalf("cert %q %v", c.KeyId, c.ValidPrincipals)
	}
	// A role without logins gets the single principal jg-<user>, never an empty list.
	tok2 := e.idp.sign(t, e.idp.base("rita", "readers"), "k1", nil)
	rec = e.post(t, tok2, map[string]string{"public_key": edKey(t)})
	json.Unmarshal(rec.Body.Bytes(), &res)
	if rec.Code != 200 || strings.Join(res.Principals, ",") != "jg-rita@example.com" {
		t.Fatalf("no-login user: %d %+v", rec.Code, res)
	}
	evs, _, _ := audit.List(context.Background(), e.store, audit.Filter{Type: audit.CertIssued})
	if len(evs) != 2 {
		t.Fatalf("cert.issued events: %d", len(evs))
	}
	if strings.Contains(e.logs.String(), tok) {
		t.Fatal("token logged")
	}
}

func TestCertificateRefusals(t *testing.T) {
	e := newAPIEnv(t)
	f := e.idp
	mod := func(m func(c claims)) claims { c := f.base("alice", "engineering"); m(c); return c }
	rogue, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := f.sign(t, f.base("alice", "engineering"), "k1", nil)
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte("alice"), []byte("admin"), 1)) + "." + parts[2]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	weak, _ := ssh.NewPublicKey(&rsa1024.PublicKey)
	tests := []struct {
		name   string
		token  string
		body   any
		status int
		reason string
	}{
		{"no token", "", map[string]string{"public_key": edKey(t)}, 401, "no_token"},
		{"expired", f.sign(t, mod(func(c claims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "k1", nil), nil, 401, "invalid_token"},
		{"not yet valid", f.sign(t, mod(func(c claims) {
			c["nbf"] = time.Now().Add(time.Hour).Unix()
			c["iat"] = time.Now().Add(time.Hour).Unix()
		}), "k1", nil), nil, 401, "invalid_token"},
		{"wrong audience", f.sign(t, mod(func(c claims) { c["aud"] = "other-app" }), "k1", nil), nil, 401, "invalid_token"},
		{"wrong issuer", f.sign(t, mod(func(c claims) { c["iss"] = "https://evil.example.com" }), "k1", nil), nil, 401, "invalid_token"},
		{"alg none", none, nil, 401, "invalid_token"},
		{"tampered", tampered, nil, 401, "invalid_token"},
		{"unknown kid", f.sign(t, f.base("alice", "engineering"), "k-unknown", rogue), nil, 401, "invalid_token"},
		{"email not verified", f.sign(t, mod(func(c claims) { c["email_verified"] = false }), "k1", nil), nil, 401, "invalid_token"},
		{"no role", f.sign(t, f.base("eve", "marketing"), "k1", nil), nil, 403, "no_role"},
		{"malformed key", f.sign(t, f.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": "ssh-ed25519 AAAA garbage"}, 400, "bad_public_key"},
		{"weak RSA key", f.sign(t, f.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": string(ssh.MarshalAuthorizedKey(weak))}, 400, "bad_public_key"},
		{"bad ttl", f.sign(t, f.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": edKey(t), "ttl": "-5m"}, 400, "bad_request"},
		{"unknown field", f.sign(t, f.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": edKey(t), "principals": "root"}, 400, "bad_request"},
		{"oversized body", f.sign(t, f.base("alice", "engineering"), "k1", nil), bytes.Repeat([]byte("x"), MaxBody+10), 413, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if body == nil {
				body = map[string]string{"public_key": edKey(t)}
			}
			rec := e.post(t, tc.token, body)
			var res map[string]string
			if rec.Code != tc.status || json.Unmarshal(rec.Body.Bytes(), &res) != nil || res["error"] == "" {
				t.Fatalf("status %d body %s, want %d with a JSON error", rec.Code, rec.Body, tc.status)
			}
			evs, _, _ := audit.List(context.Background(), e.store, audit.Filter{Type: audit.AuthFailed})
			last := evs[len(evs)-1]
			if last.Details["reason"] != tc.reason {
				t.Fatalf("auth.failed reason %v, want %s", last.Details["reason"], tc.reason)
			}
			if tc.token != "" && strings.Contains(e.logs.String(), tc.token) {
				t.Fatal("token logged")
			}
		})
	}
}

func TestReplayedTokenRefused(t *testing.T) {
	e := newAPIEnv(t)
	tok := e.idp.sign(t, e.idp.base("alice", "engineering"), "k1", nil)
	if rec := e.post(t, tok, map[string]string{"public_key": edKey(t)}); rec.Code != 200 {
		t.Fatalf("first use %d", rec.Code)
	}
	if rec := e.post(t, tok, map[string]string{"public_key": edKey(t)}); rec.Code != 401 {
		t.Fatalf("replay %d %s", rec.Code, rec.Body)
	}
}

// downLedger is a shared used-token record that cannot be written.
type downLedger struct{}

func (downLedger) MarkTokenUsed(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

// TestTokenLedgerDownFailsClosed: when the replicas' shared record of used
// tokens cannot be written, no certificate is issued (503), and the
// refusal is audited with its reason.
func TestTokenLedgerDownFailsClosed(t *testing.T) {
	e := newAPIEnv(t)
	e.api.Tokens.(*identity.Verifier).ShareUsed(downLedger{})
	rec := e.post(t, e.idp.sign(t, e.idp.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": edKey(t)})
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "cannot record") {
		t.Fatalf("ledger down: %d %s", rec.Code, rec.Body)
	}
	evs, _, _ := audit.List(context.Background(), e.store, audit.Filter{Type: audit.AuthFailed})
	if len(evs) == 0 || evs[len(evs)-1].Details["reason"] != "token_ledger_unavailable" {
		t.Fatalf("auth.failed events: %+v", evs)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newAPIEnv(t)
	if rec := e.post(t, e.idp.sign(t, e.idp.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": edKey(t)}); rec.Code != 200 {
		t.Fatal(rec.Body)
	}
	e.idp.addKey(t, "k2") // the IdP rotates; the verifier refetches on an unknown kid
	if rec := e.post(t, e.idp.sign(t, e.idp.base("alice", "engineering"), "k2", nil), map[string]string{"public_key": edKey(t)}); rec.Code != 200 {
		t.Fatalf("rotated key: %d %s", rec.Code, rec.Body)
	}
}

func TestIdPDown(t *testing.T) {
	e := newAPIEnv(t)
	e.idp.mu.Lock()
	e.idp.down = true
	e.idp.mu.Unlock()
	rec := e.post(t, e.idp.sign(t, e.idp.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": edKey(t)})
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "identity provider") {
		t.Fatalf("IdP down: %d %s", rec.Code, rec.Body)
	}
	// Nothing wrong was cached: when it comes back, logins work.
	e.idp.mu.Lock()
	e.idp.down = false
	e.idp.mu.Unlock()
	rec = e.post(t, e.idp.sign(t, e.idp.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": edKey(t)})
	if rec.Code != 200 {
		t.Fatalf("IdP back: %d %s", rec.Code, rec.Body)
	}
}

func TestRateLimited(t *testing.T) {
	e := newAPIEnv(t)
	e.api.RateLimit = 6
	e.h = e.api.Handler()
	got429 := false
	for i := 0; i < 40 && !got429; i++ {
		rec := e.post(t, e.idp.sign(t, e.idp.base("alice", "engineering"), "k1", nil), map[string]string{"public_key": edKey(t)})
		got429 = rec.Code == 429
	}
	if !got429 {
		t.Fatal("no 429 after 40 requests at a limit of 6/min")
	}
}

func BenchmarkCertificateIssue(b *testing.B) {
	e := newAPIEnv(b)
	e.api.RateLimit = 0
	e.h = e.api.Handler()
	toks := make([]string, b.N)
	keys := make([][]byte, b.N)
	for i := range toks {
		c := e.idp.base(fmt.Sprintf("user%d", i%50), "engineering")
		c["jti"] = fmt.Sprint(i)
		toks[i] = e.idp.sign(b, c, "k1", nil)
		keys[i], _ = json.Marshal(map[string]string{"public_key": edKey(b)})
	}
	var next int64
	var mu sync.Mutex
	b.ResetTimer()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			rec := e.post(b, toks[i], keys[i])
			if rec.Code != 200 {
				b.Errorf("status %d %s", rec.Code, rec.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

func TestMachineIdentity(t *testing.T) {
	e := newAPIEnv(t)
	ci := newFakeIdP(t)
	pol, err := policy.Parse([]byte(strings.Replace(testPolicy, "admins:", "  - name: deployer\n    logins: [deploy]\n    targets: {names: [\"web-*\"]}\nadmins:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	e.api.Policy = policy.Static(pol)
	ver, err := identity.New(nil,
		identity.Issuer{URL: e.idp.srv.URL, Audience: "jumpgate"},
		identity.Issuer{URL: ci.srv.URL, Audience: "jumpgate-ci", Machine: true, Subject: "repo:acme/deploy:ref:refs/heads/*", Role: "deployer"})
	if err != nil {
		t.Fatal(err)
	}
	e.api.Tokens = ver
	e.h = e.api.Handler()
	ciTok := func(sub, aud string) string {
		c := ci.base("x")
		c["sub"], c["aud"] = sub, aud
		delete(c, "email")
		delete(c, "email_verified")
		return ci.sign(t, c, "k1", nil)
	}
	rec := e.post(t, ciTok("repo:acme/deploy:ref:refs/heads/main", "jumpgate-ci"), map[string]string{"public_key": edKey(t)})
	var res certResponse
	json.Unmarshal(rec.Body.Bytes(), &res)
	if rec.Code != 200 || strings.Join(res.Principals, ",") != "deploy" || !strings.HasPrefix(res.KeyID, "repo:acme/deploy:ref:refs/heads/main/") {
		t.Fatalf("machine cert: %d %+v %s", rec.Code, res, rec.Body)
	}
	for name, tok := range map[string]string{
		"other repo":     ciTok("repo:acme/other:ref:refs/heads/main", "jumpgate-ci"),
		"other audience": ciTok("repo:acme/deploy:ref:refs/heads/main", "jumpgate"),
	} {
		if rec := e.post(t, tok, map[string]string{"public_key": edKey(t)}); rec.Code != 401 {
			t.Errorf("%s: status %d %s", name, rec.Code, rec.Body)
		}
	}
}

// FuzzCertificateRequest feeds arbitrary bodies and tokens to the
// certificate endpoint: it must answer with a JSON error or a certificate,
// never panic or 5xx on bad input.
func FuzzCertificateRequest(f *testing.F) {
	e := newAPIEnv(f)
	e.api.RateLimit = 0
	e.h = e.api.Handler()
	f.Add([]byte(`{"public_key":"ssh-ed25519 AAAA","ttl":"5m"}`), "a.b.c")
	f.Add([]byte(`{"public_key":1}`), "")
	f.Add([]byte(`[]`), "eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, body []byte, token string) {
		rec := e.post(t, token, body)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
		var res map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("non-JSON answer %q", rec.Body)
		}
	})
}

// TestTokenClockSkew: an IdP whose clock runs a little ahead is tolerated
// (nbf up to five minutes ahead, as go-oidc and other relying parties do);
// an expired token is never accepted, however recently it expired.
func TestTokenClockSkew(t *testing.T) {
	e := newAPIEnv(t)
	f := e.idp
	mod := func(m func(c claims)) claims { c := f.base("alice", "engineering"); m(c); return c }
	now := time.Now()
	for _, tc := range []struct {
		name   string
		c      claims
		status int
	}{
		{"IdP clock two minutes ahead", mod(func(c claims) { c["nbf"], c["iat"] = now.Add(2*time.Minute).Unix(), now.Add(2*time.Minute).Unix() }), 200},
		{"IdP clock ten minutes ahead", mod(func(c claims) { c["nbf"], c["iat"] = now.Add(10*time.Minute).Unix(), now.Add(10*time.Minute).Unix() }), 401},
		{"expired thirty seconds ago", mod(func(c claims) { c["exp"] = now.Add(-30 * time.Second).Unix() }), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rec := e.post(t, f.sign(t, tc.c, "k1", nil), map[string]string{"public_key": edKey(t)}); rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
		})
	}
}
