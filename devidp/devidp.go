package devidp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// ScopeGroups is the scope that puts the "groups" claim into ID tokens and
// userinfo answers.
const ScopeGroups = "groups"

// Defaults applied by New when the matching Config field is zero.
const (
	DefaultIDTokenLifetime     = 10 * time.Minute
	DefaultAccessTokenLifetime = 10 * time.Minute
	DefaultDeviceCodeLifetime  = 10 * time.Minute
	DefaultDevicePollInterval  = 5 * time.Second
	// authRequestLifetime bounds how long a login page stays usable.
	authRequestLifetime = 10 * time.Minute
	// codeLifetime bounds the time between issuing an authorization code and
	// redeeming it (RFC 6749 section 4.1.2 recommends at most 10 minutes).
	codeLifetime = time.Minute
)

// Paths served below the issuer path, besides the zitadel op endpoints
// (/.well-known/openid-configuration, /authorize, /authorize/callback,
// /oauth/token, /oauth/introspect, /userinfo, /revoke, /end_session, /keys,
// /device_authorization, /healthz, /ready).
const (
	PathLogin     = "/login"
	PathDevice    = "/device"
	PathLoggedOut = "/logged-out"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidCredentials: the username or password was wrong.
	ErrInvalidCredentials = errors.New("devidp: invalid username or password")
	// ErrInvalidUserCode: the device user code is unknown, expired or used.
	ErrInvalidUserCode = errors.New("devidp: unknown, expired or already used user code")
	// ErrLoginExpired: the login request is unknown, expired or already used.
	ErrLoginExpired = errors.New("devidp: unknown, expired or already used login request")
	// ErrInvalidConfig wraps every configuration problem New reports.
	ErrInvalidConfig = errors.New("devidp: invalid config")
)

// ResponseError is returned by BrowserLogin and CompleteDeviceLogin when the
// provider answered something they did not expect (for example a 400 page
// for an unregistered redirect URI).
type ResponseError struct {
	StatusCode int
	URL        string
	Message    string // first line of the body, trimmed
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("devidp: unexpected response %d from %s: %s", e.StatusCode, e.URL, e.Message)
}

// User is a demo account. Passwords are compared as plain text (in constant
// time): this provider is for development only.
type User struct {
	Username string // also the subject ("sub") and preferred_username
	Password string
	Email    string // default <username>@example.com
	Name     string // default Username
	Groups   []string
}

// Client is a public OIDC client (no secret; PKCE S256 is required for the
// code flow). Every client may use the authorization code grant and the
// device authorization grant.
type Client struct {
	ID string
	// RedirectURIs are matched exactly; in addition a loopback URI
	// (http or https on 127.0.0.1, [::1] or localhost) matches any loopback
	// URI with the same path and query whatever its port and loopback host
	// name (RFC 8252 section 7.3), e.g. registering
	// "http://127.0.0.1/callback" admits "http://localhost:53122/callback".
	RedirectURIs []string
	// PostLogoutRedirectURIs are the allowed post_logout_redirect_uri values
	// of end_session (same loopback rule).
	PostLogoutRedirectURIs []string
}

// Config configures a Provider. Zero values take the documented defaults.
type Config struct {
	// Issuer is the issuer URL, e.g. https://127.0.0.1:8443/dev-idp (no
	// trailing slash, query or fragment). http is accepted only when the host
	// is a loopback address or "localhost".
	Issuer  string
	Users   []User
	Clients []Client
	// SigningKeyFile, when set, holds the PKCS#8 PEM signing key (RSA →
	// RS256, ECDSA P-256 → ES256). It is created (0600, RSA 2048) when
	// missing, so ID tokens stay verifiable across restarts. Empty: a fresh
	// in-memory RSA key each start.
	SigningKeyFile string
	// IDTokenLifetime defaults to 10m; AccessTokenLifetime to 10m.
	IDTokenLifetime     time.Duration
	AccessTokenLifetime time.Duration
	// DeviceCodeLifetime defaults to 10m; DevicePollInterval to 5s (whole
	// seconds; at least 1s).
	DeviceCodeLifetime time.Duration
	DevicePollInterval time.Duration
	// Clock drives this package's own state (login requests, codes, access
	// tokens, device codes, auth_time). The zitadel library stamps iat/exp
	// of tokens with the real time. Default time.Now.
	Clock func() time.Time
	// Rand is the randomness for login request ids, access token ids and
	// the token encryption key. Default crypto/rand.Reader. (Since Go 1.26
	// crypto/rsa ignores it for key generation; the zitadel library draws
	// device and user codes from crypto/rand itself.)
	Rand io.Reader
	// Logger gets this package's events. Default slog.Default(). The zitadel
	// library itself logs through slog.Default().
	Logger *slog.Logger
}

// Provider is a running development OpenID Provider.
type Provider struct {
	issuer    string
	issuerURL *url.URL
	prefix    string // issuer path without trailing slash; "" at the root
	op        *op.Provider
	store     *storage
	log       *slog.Logger
	handler   http.Handler
}

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// New validates cfg and builds the provider.
func New(cfg Config) (*Provider, error) {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IDTokenLifetime <= 0 {
		cfg.IDTokenLifetime = DefaultIDTokenLifetime
	}
	if cfg.AccessTokenLifetime <= 0 {
		cfg.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if cfg.DeviceCodeLifetime <= 0 {
		cfg.DeviceCodeLifetime = DefaultDeviceCodeLifetime
	}
	if cfg.DevicePollInterval <= 0 {
		cfg.DevicePollInterval = DefaultDevicePollInterval
	}
	if cfg.DevicePollInterval < time.Second {
		cfg.DevicePollInterval = time.Second
	}
	issuerURL, err := validateIssuer(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	users, err := validateUsers(cfg.Users)
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(issuerURL.Path, "/")
	clients, err := validateClients(cfg.Clients, prefix, cfg.IDTokenLifetime)
	if err != nil {
		return nil, err
	}
	key, err := loadOrCreateSigningKey(cfg.SigningKeyFile, cfg.Rand)
	if err != nil {
		return nil, err
	}
	var cryptoKey [32]byte
	if _, err := io.ReadFull(cfg.Rand, cryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devidp: token encryption key: %w", err)
	}
	store := &storage{
		now:            cfg.Clock,
		rand:           cfg.Rand,
		users:          users,
		clients:        clients,
		key:            key,
		accessLifetime: cfg.AccessTokenLifetime,
		deviceLifetime: cfg.DeviceCodeLifetime,
		authRequests:   map[string]*authRequest{},
		codes:          map[string]string{},
		tokens:         map[string]*accessToken{},
		deviceCodes:    map[string]*deviceEntry{},
		userCodes:      map[string]string{},
	}
	opCfg := &op.Config{
		CryptoKey:                cryptoKey,
		CryptoKeyId:              "devidp",
		DefaultLogoutRedirectURI: prefix + PathLoggedOut,
		CodeMethodS256:           true,
		SupportedUILocales:       []language.Tag{language.English},
		SupportedScopes:          []string{"openid", "profile", "email", ScopeGroups},
		SupportedClaims:          append(append([]string{}, op.DefaultSupportedClaims...), "groups"),
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     cfg.DeviceCodeLifetime,
			PollInterval: cfg.DevicePollInterval.Truncate(time.Second),
			// The library replaces the issuer's whole path with this one.
			UserFormPath: prefix + PathDevice,
			UserCode:     op.UserCodeBase20,
		},
	}
	var opts []op.Option
	if issuerURL.Scheme == "http" {
		// Only reachable for loopback issuers (validateIssuer): this is the
		// development IdP, and OIDC requires https everywhere else.
		opts = append(opts, op.WithAllowInsecure())
	}
	provider, err := op.NewProvider(opCfg, store, op.StaticIssuer(issuerURL.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("devidp: zitadel provider: %w", err)
	}
	p := &Provider{
		issuer:    issuerURL.String(),
		issuerURL: issuerURL,
		prefix:    prefix,
		op:        provider,
		store:     store,
		log:       cfg.Logger.With("component", "devidp"),
	}
	p.handler = p.buildHandler()
	p.log.Warn("DEVELOPMENT OpenID Provider enabled: do not use in production", "issuer", p.issuer)
	return p, nil
}

// Issuer returns the issuer URL exactly as it appears in tokens.
func (p *Provider) Issuer() string { return p.issuer }

// DeviceVerificationURI returns the verification_uri of device logins.
func (p *Provider) DeviceVerificationURI() string {
	u := *p.issuerURL
	u.Path = p.prefix + PathDevice
	return u.String()
}

// Handler serves every endpoint of the provider. Requests carry their full
// path: mount it at the issuer's path, e.g. for the issuer
// https://127.0.0.1:8443/dev-idp use mux.Handle("/dev-idp/", p.Handler());
// the handler strips the prefix itself and answers 404 outside it.
func (p *Provider) Handler() http.Handler { return p.handler }

func validateIssuer(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || raw == "" {
		return nil, fmt.Errorf("%w: issuer %q is not a URL", ErrInvalidConfig, raw)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: issuer %q must be scheme://host[:port][/path] without user, query or fragment", ErrInvalidConfig, raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("%w: http issuer %q is allowed only on loopback", ErrInvalidConfig, raw)
		}
	default:
		return nil, fmt.Errorf("%w: issuer %q must use https (or http on loopback)", ErrInvalidConfig, raw)
	}
	if strings.Contains(u.Path, "//") || strings.Contains(u.Path, "/.") {
		return nil, fmt.Errorf("%w: issuer path %q is not clean", ErrInvalidConfig, u.Path)
	}
	u.RawPath = ""
	return u, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateUsers(in []User) (map[string]*User, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("%w: no users", ErrInvalidConfig)
	}
	users := make(map[string]*User, len(in))
	for i, u := range in {
		if !usernameRE.MatchString(u.Username) {
			return nil, fmt.Errorf("%w: user %d: username %q must match %s", ErrInvalidConfig, i, u.Username, usernameRE)
		}
		if u.Password == "" {
			return nil, fmt.Errorf("%w: user %q has an empty password", ErrInvalidConfig, u.Username)
		}
		if _, dup := users[u.Username]; dup {
			return nil, fmt.Errorf("%w: duplicate user %q", ErrInvalidConfig, u.Username)
		}
		c := u
		c.Groups = append([]string(nil), u.Groups...)
		if c.Email == "" {
			c.Email = u.Username + "@example.com"
		}
		if c.Name == "" {
			c.Name = u.Username
		}
		users[u.Username] = &c
	}
	return users, nil
}

func validateClients(in []Client, prefix string, idTokenLifetime time.Duration) (map[string]*client, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("%w: no clients", ErrInvalidConfig)
	}
	clients := make(map[string]*client, len(in))
	for i, c := range in {
		if c.ID == "" || strings.ContainsAny(c.ID, " :\t\r\n") {
			return nil, fmt.Errorf("%w: client %d: bad id %q", ErrInvalidConfig, i, c.ID)
		}
		if _, dup := clients[c.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate client %q", ErrInvalidConfig, c.ID)
		}
		for _, list := range [][]string{c.RedirectURIs, c.PostLogoutRedirectURIs} {
			for _, r := range list {
				u, err := url.Parse(r)
				if err != nil || !u.IsAbs() || u.Fragment != "" {
					return nil, fmt.Errorf("%w: client %q: redirect URI %q must be absolute without fragment", ErrInvalidConfig, c.ID, r)
				}
			}
		}
		clients[c.ID] = &client{
			id:              c.ID,
			redirectURIs:    append([]string(nil), c.RedirectURIs...),
			postLogoutURIs:  append([]string(nil), c.PostLogoutRedirectURIs...),
			loginPath:       prefix + PathLogin,
			idTokenLifetime: idTokenLifetime,
		}
	}
	return clients, nil
}

// DemoPassword returns the fixed development password of a DemoUsers
// account: "<username>-dev-only".
func DemoPassword(username string) string { return username + "-dev-only" }

// DemoUsers returns the demo accounts of `jumpgate dev`. Their passwords are
// fixed and public (see DemoPassword): DEVELOPMENT ONLY.
func DemoUsers() []User {
	mk := func(name, full string, groups ...string) User {
		return User{Username: name, Password: DemoPassword(name), Email: name + "@example.com", Name: full, Groups: groups}
	}
	return []User{
		mk("alice", "Alice Engineer", "engineering"),
		mk("bob", "Bob DBA", "dba", "engineering"),
		mk("carol", "Carol Security", "security"),
		mk("dave", "Dave SRE Lead", "sre-leads"),
	}
}
