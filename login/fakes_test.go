package login

// The fakes in this file stand in for the jumpgate server's certificate
// endpoint and for an OIDC provider. They are acceptable here only because
// the real devidp and server are being written in parallel; the end-to-end
// test against the real ones belongs to integration (test/). Both fakes are
// real HTTPS servers on loopback, signing with real keys: an in-memory SSH CA
// and an RSA key whose ID tokens are signed with go-jose.

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/sshauth"
)

const testClientID = "jumpgate"

type authCode struct {
	challenge, nonce, redirect string
}

type fakeIdP struct {
	t      *testing.T
	srv    *httptest.Server
	signer jose.Signer
	pub    *rsa.PublicKey

	mu           sync.Mutex
	codes        map[string]authCode
	issued       map[string]bool // raw ID tokens handed out
	pendingLeft  int             // device polls answered authorization_pending
	devicePolls  int
	wrongNonce   bool
	authRequests []url.Values
}

func newFakeIdP(t *testing.T) *fakeIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIdP{t: t, signer: signer, pub: &key.PublicKey, codes: map[string]authCode{}, issued: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.pub, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", f.authorize)
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("POST /device", f.device)
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) issuer() string { return f.srv.URL }

func (f *fakeIdP) discovery(w http.ResponseWriter, r *http.Request) {
	iss := f.issuer()
	writeJSON(w, 200, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"jwks_uri":                              iss + "/jwks",
		"device_authorization_endpoint":         iss + "/device",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (f *fakeIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.authRequests = append(f.authRequests, q)
	f.mu.Unlock()
	redirect := q.Get("redirect_uri")
	switch {
	case q.Get("client_id") != testClientID, q.Get("response_type") != "code",
		q.Get("code_challenge_method") != "S256", q.Get("code_challenge") == "",
		q.Get("state") == "", q.Get("nonce") == "",
		!strings.HasPrefix(redirect, "http://127.0.0.1:") || !strings.HasSuffix(redirect, "/callback"):
		http.Error(w, "bad authorization request: "+q.Encode(), http.StatusBadRequest)
		return
	}
	code := randHex(f.t, 16)
	f.mu.Lock()
	f.codes[code] = authCode{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: redirect}
	f.mu.Unlock()
	http.Redirect(w, r, redirect+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
}

func (f *fakeIdP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		c, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code"))
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge || r.PostForm.Get("redirect_uri") != c.redirect {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		nonce := c.nonce
		if f.wrongNonce {
			nonce = "not-the-nonce"
		}
		writeJSON(w, 200, f.tokenResponse(nonce))
	case "urn:ietf:params:oauth:grant-type:device_code":
		f.devicePolls++
		if r.PostForm.Get("device_code") != "dev-code-1" {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		if f.pendingLeft > 0 {
			f.pendingLeft--
			writeJSON(w, 400, map[string]string{"error": "authorization_pending"})
			return
		}
		writeJSON(w, 200, f.tokenResponse(""))
	default:
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
	}
}

// tokenResponse must be called with f.mu held.
func (f *fakeIdP) tokenResponse(nonce string) map[string]any {
	raw := f.idToken(nonce)
	f.issued[raw] = true
	return map[string]any{"access_token": "at-" + randHex(f.t, 8), "token_type": "Bearer", "expires_in": 300, "id_token": raw}
}

func (f *fakeIdP) idToken(nonce string) string {
	now := time.Now()
	claims := map[string]any{
		"iss": f.issuer(), "sub": "alice-sub", "aud": testClientID,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "alice@example.com", "groups": []string{"engineering"},
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	payload, _ := json.Marshal(claims)
	jws, err := f.signer.Sign(payload)
	if err != nil {
		f.t.Error(err)
		return ""
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		f.t.Error(err)
	}
	return raw
}

func (f *fakeIdP) device(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") != testClientID {
		writeJSON(w, 400, map[string]string{"error": "invalid_client"})
		return
	}
	writeJSON(w, 200, map[string]any{
		"device_code": "dev-code-1", "user_code": "WDJB-MJHT",
		"verification_uri":          f.issuer() + "/activate",
		"verification_uri_complete": f.issuer() + "/activate?user_code=WDJB-MJHT",
		"expires_in":                600, "interval": 1,
	})
}

func (f *fakeIdP) accepts(token string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued[token]
}

// certMode changes what the fake server's certificate endpoint answers.
type certMode int

const (
	certOK certMode = iota
	certOtherKey
	certHostCert
	certForbidden
)

type fakeServer struct {
	t        *testing.T
	srv      *httptest.Server
	idp      *fakeIdP
	userCA   ssh.Signer
	hostCA   ssh.Signer
	verifier *sshauth.Verifier

	mu         sync.Mutex
	mode       certMode
	ttl        time.Duration // overrides the requested TTL when set
	serial     uint64
	lastTTL    string
	lastToken  string
	deviceFlow bool
}

func newFakeServer(t *testing.T, idp *fakeIdP) *fakeServer {
	t.Helper()
	s := &fakeServer{t: t, idp: idp, userCA: newTestSigner(t), hostCA: newTestSigner(t), deviceFlow: true}
	s.verifier = &sshauth.Verifier{Checker: sshauth.CAChecker([]ssh.PublicKey{s.userCA.PublicKey()}, nil, nil)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, 200, map[string]any{
			"issuer": idp.issuer(), "client_id": testClientID,
			"scopes": []string{"openid", "email", "profile", "groups"}, "device_flow": s.deviceFlow,
			"ssh_address": "127.0.0.1:2222",
		})
	})
	mux.HandleFunc("POST /v1/ssh/certificates", s.issue)
	mux.HandleFunc("/v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		cert, err := s.verifier.Verify(r, body)
		if err != nil {
			writeJSON(w, 401, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]any{"key_id": cert.KeyId, "method": r.Method, "body": string(body)})
	})
	mux.HandleFunc("GET /v1/forbidden", func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.verifier.Verify(r, nil); err != nil {
			writeJSON(w, 401, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, 403, map[string]string{"error": "alice is not an auditor"})
	})
	s.srv = httptest.NewTLSServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *fakeServer) issue(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.idp.accepts(tok) {
		writeJSON(w, 401, map[string]string{"error": "invalid ID token"})
		return
	}
	var req struct {
		PublicKey string `json:"public_key"`
		TTL       string `json:"ttl"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, 400, map[string]string{"error": "bad JSON"})
		return
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		writeJSON(w, 400, map[string]string{"error": "bad public key"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastTTL, s.lastToken = req.TTL, tok
	switch s.mode {
	case certForbidden:
		writeJSON(w, 403, map[string]string{"error": "user alice@example.com has no role"})
		return
	case certOtherKey:
		pub = newTestSigner(s.t).PublicKey()
	}
	typ := uint32(ssh.UserCert)
	if s.mode == certHostCert {
		typ = ssh.HostCert
	}
	ttl := 10 * time.Minute
	if s.ttl > 0 {
		ttl = s.ttl
	}
	now := time.Now()
	s.serial++
	cert := &ssh.Certificate{
		Key: pub, Serial: s.serial, CertType: typ, KeyId: fmt.Sprintf("alice/%d", s.serial),
		ValidPrincipals: []string{"ubuntu", "deploy"},
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(ttl).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, s.userCA); err != nil {
		writeJSON(w, 500, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, 200, map[string]any{
		"certificate": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		"host_ca":     strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.hostCA.PublicKey()))),
		"serial":      cert.Serial, "expires_at": time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339),
		"ttl_clamped": false, "principals": cert.ValidPrincipals,
	})
}

func (s *fakeServer) setMode(m certMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// caFile writes the httptest certificate (shared by both fakes) as PEM.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
