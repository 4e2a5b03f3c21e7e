package identity

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Errors callers branch on.
var (
	// ErrInvalidToken: the token is malformed, unsigned, tampered, expired,
	// for another audience or issuer. HTTP 401.
	ErrInvalidToken = errors.New("identity: invalid token")
	// ErrUnavailable: the IdP's discovery or keys cannot be fetched. HTTP 503.
	ErrUnavailable = errors.New("identity: identity provider unavailable")
	// ErrReplay: the token was already traded for a certificate. HTTP 401.
	ErrReplay = errors.New("identity: token already used")
	// ErrLedger: the shared record of used tokens cannot be written, so
	// the token is not accepted (fail closed). HTTP 503.
	ErrLedger = errors.New("identity: the record of used tokens cannot be written")
)

// Ledger records used tokens across replicas (storage.TokenLedger).
type Ledger interface {
	MarkTokenUsed(ctx context.Context, key string, expires time.Time) (fresh bool, err error)
}

// Identity is a verified caller.
type Identity struct {
	Username string
	Groups   []string
	// Roles are granted directly (machine identities).
	Roles   []string
	Email   string
	Issuer  string
	Subject string
	Machine bool
	Expiry  time.Time
}

// Issuer describes one trusted token issuer.
type Issuer struct {
	URL      string
	Audience string
	// UsernameClaim and GroupsClaim name the claims (default email, groups).
	UsernameClaim string
	GroupsClaim   string
	// CAFile adds roots for the issuer's TLS.
	CAFile string
	// Machine issuers: Subject is an exact subject or a path.Match glob and
	// Role is granted to a matching token.
	Machine bool
	Subject string
	Role    string
}

type issuer struct {
	cfg    Issuer
	client *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// Verifier verifies ID tokens from a set of issuers.
type Verifier struct {
	issuers []*issuer
	clock   func() time.Time

	ledger Ledger // nil: this process's record is the only one

	mu        sync.Mutex
	used      map[string]time.Time
	lastSweep time.Time
}

// ShareUsed makes MarkUsed also record tokens in l, shared by every
// replica, so a token is accepted once across all of them. Call it before
// the verifier is used.
func (v *Verifier) ShareUsed(l Ledger) { v.ledger = l }

// New builds a verifier. Discovery happens lazily at the first token, and is
// retried on later tokens while the IdP is unreachable.
func New(clock func() time.Time, issuers ...Issuer) (*Verifier, error) {
	if clock == nil {
		clock = time.Now
	}
	v := &Verifier{clock: clock, used: map[string]time.Time{}}
	for _, c := range issuers {
		if c.UsernameClaim == "" {
			c.UsernameClaim = "email"
		}
		if c.GroupsClaim == "" {
			c.GroupsClaim = "groups"
		}
		if c.Machine && c.UsernameClaim == "email" {
			c.UsernameClaim = "sub"
		}
		client, err := httpClient(c.CAFile)
		if err != nil {
			return nil, err
		}
		v.issuers = append(v.issuers, &issuer{cfg: c, client: client})
	}
	return v, nil
}

func httpClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("identity: ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("identity: ca_file %s holds no PEM certificates", caFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

func (is *issuer) get(ctx context.Context, clock func() time.Time) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	ctx = oidc.ClientContext(ctx, is.client)
	p, err := oidc.NewProvider(ctx, is.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, is.cfg.URL, err)
	}
	// The key set must use our client (extra roots) beyond this call.
	var claims struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: discovery: %v", ErrUnavailable, err)
	}
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), is.client), claims.JWKSURI)
	is.verifier = oidc.NewVerifier(is.cfg.URL, keys, &oidc.Config{ClientID: is.cfg.Audience, Now: clock})
	return is.verifier, nil
}

// unverifiedIssuer reads the iss claim to pick the verifier; the signature
// is checked by that verifier afterwards.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("%w: not a signed JWT", ErrInvalidToken)
	}
	b, err := decodeSegment(parts[1])
	if err != nil {
		return "", fmt.Errorf("%w: payload: %v", ErrInvalidToken, err)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("%w: payload: %v", ErrInvalidToken, err)
	}
	return c.Iss, nil
}

// MaxTokenSize bounds the tokens accepted.
const MaxTokenSize = 16 << 10

// Verify checks raw and returns the identity it proves. Every issuer whose
// URL matches the token's iss claim is tried (a company IdP and a machine
// rule may share an issuer).
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	if len(raw) > MaxTokenSize {
		return Identity{}, fmt.Errorf("%w: token too large", ErrInvalidToken)
	}
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return Identity{}, err
	}
	var lastErr error = fmt.Errorf("%w: issuer %q is not trusted", ErrInvalidToken, iss)
	for _, is := range v.issuers {
		if is.cfg.URL != iss {
			continue
		}
		id, err := v.verifyWith(ctx, is, raw)
		if err == nil {
			return id, nil
		}
		lastErr = err
		if errors.Is(err, ErrUnavailable) {
			return Identity{}, err
		}
	}
	return Identity{}, lastErr
}

func (v *Verifier) verifyWith(ctx context.Context, is *issuer, raw string) (Identity, error) {
	verifier, err := is.get(ctx, v.clock)
	if err != nil {
		return Identity{}, err
	}
	tok, err := verifier.Verify(oidc.ClientContext(ctx, is.client), raw)
	if err != nil {
		if strings.Contains(err.Error(), "fetching keys") {
			return Identity{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	if ev, ok := claims["email_verified"]; ok {
		if b, ok := ev.(bool); !ok || !b {
			return Identity{}, fmt.Errorf("%w: email not verified", ErrInvalidToken)
		}
	}
	id := Identity{Issuer: tok.Issuer, Subject: tok.Subject, Expiry: tok.Expiry, Machine: is.cfg.Machine}
	if e, ok := claims["email"].(string); ok {
		id.Email = e
	}
	name, _ := claims[is.cfg.UsernameClaim].(string)
	if is.cfg.UsernameClaim == "sub" {
		name = tok.Subject
	}
	if name == "" || len(name) > 256 || strings.ContainsAny(name, "\x00\n\r\t ,") {
		return Identity{}, fmt.Errorf("%w: claim %q is missing or not a usable username", ErrInvalidToken, is.cfg.UsernameClaim)
	}
	id.Username = name
	switch g := claims[is.cfg.GroupsClaim].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				id.Groups = append(id.Groups, s)
			}
		}
	case string:
		id.Groups = []string{g}
	}
	if is.cfg.Machine {
		ok, err := path.Match(is.cfg.Subject, tok.Subject)
		if err != nil || !(ok || is.cfg.Subject == tok.Subject) {
			return Identity{}, fmt.Errorf("%w: subject %q does not match a machine identity", ErrInvalidToken, tok.Subject)
		}
		id.Roles = []string{is.cfg.Role}
		id.Groups = nil
	}
	return id, nil
}

// MarkUsed records that raw was traded for a certificate and refuses it the
// second time (ErrReplay), for as long as the token is valid. With a shared
// ledger the refusal holds across replicas; a ledger that cannot be written
// refuses the token (ErrLedger).
func (v *Verifier) MarkUsed(ctx context.Context, raw string, expiry time.Time) error {
	sum := sha256.Sum256([]byte(raw))
	k := hex.EncodeToString(sum[:])
	until := expiry.Add(time.Minute)
	now := v.clock()
	v.mu.Lock()
	// Forget expired tokens at most every 10 seconds: a sweep on every
	// call would cost O(tokens in flight) per certificate.
	if len(v.used) > 4096 && now.Sub(v.lastSweep) > 10*time.Second {
		v.lastSweep = now
		for t, exp := range v.used {
			if now.After(exp) {
				delete(v.used, t)
			}
		}
	}
	if exp, ok := v.used[k]; ok && now.Before(exp) {
		v.mu.Unlock()
		return ErrReplay
	}
	if v.ledger == nil {
		v.used[k] = until
		v.mu.Unlock()
		return nil
	}
	v.mu.Unlock()
	// The ledger decides between replicas (and between two requests with
	// the same token here): one statement, one fresh answer.
	fresh, err := v.ledger.MarkTokenUsed(ctx, k, until)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLedger, err)
	}
	v.mu.Lock()
	v.used[k] = until
	v.mu.Unlock()
	if !fresh {
		return ErrReplay
	}
	return nil
}
