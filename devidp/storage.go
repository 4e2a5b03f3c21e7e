package devidp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the in-memory op.Storage (plus op.DeviceAuthorizationStorage
// and op.CanSetUserinfoFromRequest) behind the provider. One mutex guards
// every map; values handed to the zitadel library are copies, so the
// library never reads state that a login page mutates.
type storage struct {
	now            func() time.Time
	rand           io.Reader
	users          map[string]*User // by username (= subject); read-only
	clients        map[string]*client
	key            *signingKey
	accessLifetime time.Duration
	deviceLifetime time.Duration

	mu           sync.Mutex
	authRequests map[string]*authRequest
	codes        map[string]string // code → auth request id
	tokens       map[string]*accessToken
	deviceCodes  map[string]*deviceEntry
	userCodes    map[string]string // normalized user code → device code
}

var (
	_ op.Storage                    = (*storage)(nil)
	_ op.DeviceAuthorizationStorage = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest  = (*storage)(nil)
)

var (
	errNotFound       = errors.New("devidp: not found or expired")
	errNoRefresh      = errors.New("devidp: refresh tokens are not supported")
	errNoClientSecret = errors.New("devidp: clients are public and have no secret")
	errNoJWTProfile   = errors.New("devidp: JWT profile grants are not supported")
)

// authRequest implements op.AuthRequest. The stored value is only changed
// under storage.mu; the library gets copies.
type authRequest struct {
	id           string
	clientID     string
	redirectURI  string
	state        string
	nonce        string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge
	created      time.Time

	done       bool
	subject    string
	authTime   time.Time
	codeIssued time.Time // zero until a code was handed out
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }
func (a *authRequest) GetAMR() []string {
	if a.done {
		return []string{"pwd"}
	}
	return nil
}

func (a *authRequest) snapshot() *authRequest {
	c := *a
	c.scopes = slices.Clone(a.scopes)
	return &c
}

type accessToken struct {
	id       string
	clientID string
	subject  string
	scopes   []string
	expires  time.Time
}

type deviceEntry struct {
	deviceCode string
	userCode   string // normalized
	clientID   string
	scopes     []string
	expires    time.Time // by storage.now
	done       bool
	denied     bool
	subject    string
	authTime   time.Time
}

func (s *storage) newID() (string, error) {
	var b [18]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", fmt.Errorf("devidp: random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// gcLocked drops expired state so a long-running `jumpgate dev` does not grow.
func (s *storage) gcLocked(now time.Time) {
	for id, r := range s.authRequests {
		if now.Sub(r.created) > authRequestLifetime+codeLifetime {
			s.deleteAuthRequestLocked(id)
		}
	}
	for id, t := range s.tokens {
		if now.After(t.expires) {
			delete(s.tokens, id)
		}
	}
	// Expired device codes stay one more lifetime so pollers learn
	// "expired_token" rather than "access_denied".
	for dc, e := range s.deviceCodes {
		if now.After(e.expires.Add(s.deviceLifetime)) {
			delete(s.userCodes, e.userCode)
			delete(s.deviceCodes, dc)
		}
	}
}

func (s *storage) deleteAuthRequestLocked(id string) {
	delete(s.authRequests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
}

// --- users -----------------------------------------------------------------

// dummyDigest stands in for the password of an unknown user so that both
// paths do the same constant-time work.
var dummyDigest = sha256.Sum256([]byte("devidp: no such user"))

// checkPassword reports the user when username and password match. The
// password comparison is constant-time over SHA-256 digests (so the length
// does not leak either).
func (s *storage) checkPassword(username, password string) (*User, bool) {
	u, known := s.users[username]
	want := dummyDigest
	if known {
		want = sha256.Sum256([]byte(u.Password))
	}
	got := sha256.Sum256([]byte(password))
	match := subtle.ConstantTimeCompare(want[:], got[:]) == 1
	if !known || !match {
		return nil, false
	}
	return u, true
}

func (s *storage) setUserinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	u, ok := s.users[subject]
	if !ok {
		return fmt.Errorf("devidp: unknown subject %q", subject)
	}
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeOpenID:
			info.Subject = u.Username
		case oidc.ScopeEmail:
			info.Email = u.Email
			info.EmailVerified = true
		case oidc.ScopeProfile:
			info.Name = u.Name
			info.PreferredUsername = u.Username
		case ScopeGroups:
			info.AppendClaims("groups", append([]string{}, u.Groups...))
		}
	}
	return nil
}

// --- login page support ------------------------------------------------------

// loginRequest returns the client and scopes of a pending login.
func (s *storage) loginRequest(id string) (clientID string, scopes []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.authRequests[id]
	if !ok || r.done || s.now().Sub(r.created) > authRequestLifetime {
		return "", nil, ErrLoginExpired
	}
	return r.clientID, slices.Clone(r.scopes), nil
}

// completeLogin marks the pending login id as authenticated as u.
func (s *storage) completeLogin(id string, u *User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, ok := s.authRequests[id]
	if !ok || r.done || now.Sub(r.created) > authRequestLifetime {
		return ErrLoginExpired
	}
	r.done = true
	r.subject = u.Username
	r.authTime = now
	return nil
}

// --- op.AuthStorage ----------------------------------------------------------

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired().WithDescription("this development IdP keeps no sessions")
	}
	if req.CodeChallenge == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	if req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.gcLocked(now)
	id, err := s.newID()
	if err != nil {
		return nil, err
	}
	r := &authRequest{
		id:           id,
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       slices.Clone(req.Scopes),
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		challenge:    &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
		created:      now,
	}
	s.authRequests[id] = r
	return r.snapshot(), nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.authRequests[id]
	if !ok || s.now().Sub(r.created) > authRequestLifetime+codeLifetime {
		return nil, errNotFound
	}
	return r.snapshot(), nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errNotFound
	}
	r, ok := s.authRequests[id]
	if !ok || s.now().Sub(r.codeIssued) > codeLifetime {
		return nil, errNotFound
	}
	return r.snapshot(), nil
}

// SaveAuthCode allows one code per login: replaying the callback URL does
// not mint a second one.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.authRequests[id]
	if !ok || !r.done {
		return errNotFound
	}
	if !r.codeIssued.IsZero() {
		return oidc.ErrInvalidRequest().WithDescription("this login was already used")
	}
	r.codeIssued = s.now()
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteAuthRequestLocked(id)
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	var clientID string
	if c, ok := req.(interface{ GetClientID() string }); ok {
		clientID = c.GetClientID()
	}
	if clientID == "" {
		return "", time.Time{}, fmt.Errorf("devidp: token request %T names no client", req)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := s.newID()
	if err != nil {
		return "", time.Time{}, err
	}
	t := &accessToken{
		id:       id,
		clientID: clientID,
		subject:  req.GetSubject(),
		scopes:   slices.Clone(req.GetScopes()),
		expires:  s.now().Add(s.accessLifetime),
	}
	s.tokens[id] = t
	return id, t.expires, nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errNoRefresh
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, oidc.ErrInvalidGrant().WithParent(errNoRefresh)
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tokens {
		if t.subject == userID && (clientID == "" || t.clientID == clientID) {
			delete(s.tokens, id)
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenOrID]
	if !ok {
		return nil // unknown tokens are already "revoked" (RFC 7009)
	}
	if t.clientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
	}
	delete(s.tokens, tokenOrID)
	return nil
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.key.alg}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

// --- op.OPStorage ------------------------------------------------------------

func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	c, ok := s.clients[clientID]
	if !ok {
		return nil, fmt.Errorf("devidp: unknown client %q", clientID)
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(context.Context, string, string) error {
	return errNoClientSecret
}

// SetUserinfoFromScopes is deprecated upstream; SetUserinfoFromRequest does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(info, req.GetSubject(), scopes)
}

func (s *storage) tokenFor(tokenID, subject string) (*accessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenID]
	if !ok || t.subject != subject || s.now().After(t.expires) {
		return nil, errNotFound
	}
	c := *t
	return &c, nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, err := s.tokenFor(tokenID, subject)
	if err != nil {
		return err
	}
	return s.setUserinfo(info, t.subject, t.scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	t, err := s.tokenFor(tokenID, subject)
	if err != nil {
		return err
	}
	if t.clientID != clientID {
		return errors.New("devidp: token was not issued to this client")
	}
	info := new(oidc.UserInfo)
	if err := s.setUserinfo(info, t.subject, t.scopes); err != nil {
		return err
	}
	resp.SetUserInfo(info)
	resp.Scope = t.scopes
	resp.ClientID = t.clientID
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNoJWTProfile
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errNoJWTProfile
}

func (s *storage) Health(context.Context) error { return nil }

// --- device authorization (RFC 8628) -----------------------------------------

// normalizeUserCode makes "bcdf ghjk", "BCDF-GHJK" and "bcdfghjk" equal.
func normalizeUserCode(code string) string {
	var b strings.Builder
	for _, r := range code {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		}
		if b.Len() > 64 {
			break
		}
	}
	return b.String()
}

func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, _ time.Time, scopes []string) error {
	if _, ok := s.clients[clientID]; !ok {
		return fmt.Errorf("devidp: unknown client %q", clientID)
	}
	norm := normalizeUserCode(userCode)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.gcLocked(now)
	if _, dup := s.userCodes[norm]; dup {
		return op.ErrDuplicateUserCode
	}
	// The library computed its expiry with time.Now; keep ours on s.now so
	// the injected clock governs the whole device flow.
	s.deviceCodes[deviceCode] = &deviceEntry{
		deviceCode: deviceCode,
		userCode:   norm,
		clientID:   clientID,
		scopes:     slices.Clone(scopes),
		expires:    now.Add(s.deviceLifetime),
	}
	s.userCodes[norm] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState (sic, the library's spelling) answers a token
// poll. A completed or denied authorization is answered once, then
// forgotten, so a device code yields at most one token.
func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.deviceCodes[deviceCode]
	if !ok || e.clientID != clientID {
		return nil, errNotFound
	}
	now := s.now()
	st := &op.DeviceAuthorizationState{
		ClientID: e.clientID,
		Audience: []string{e.clientID},
		Scopes:   slices.Clone(e.scopes),
		Done:     e.done,
		Denied:   e.denied,
		Subject:  e.subject,
		AuthTime: e.authTime,
	}
	if e.done {
		st.AMR = []string{"pwd"}
	}
	switch {
	case e.done || e.denied:
		delete(s.userCodes, e.userCode)
		delete(s.deviceCodes, deviceCode)
	case now.After(e.expires):
		st.Expires = time.Time{} // the library compares with time.Now: already past
	default:
		st.Expires = time.Now().Add(e.expires.Sub(now))
	}
	return st, nil
}

// pendingDevice returns the client and scopes of a pending user code.
func (s *storage) pendingDevice(userCode string) (clientID string, scopes []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.pendingDeviceLocked(userCode)
	if err != nil {
		return "", nil, err
	}
	return e.clientID, slices.Clone(e.scopes), nil
}

func (s *storage) pendingDeviceLocked(userCode string) (*deviceEntry, error) {
	dc, ok := s.userCodes[normalizeUserCode(userCode)]
	if !ok {
		return nil, ErrInvalidUserCode
	}
	e, ok := s.deviceCodes[dc]
	if !ok || e.done || e.denied || s.now().After(e.expires) {
		return nil, ErrInvalidUserCode
	}
	return e, nil
}

// decideDevice approves (as u) or denies the pending user code.
func (s *storage) decideDevice(userCode string, u *User, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.pendingDeviceLocked(userCode)
	if err != nil {
		return err
	}
	if !approve {
		e.denied = true
		return nil
	}
	e.done = true
	e.subject = u.Username
	e.authTime = s.now()
	return nil
}
