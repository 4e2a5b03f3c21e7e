package devidp

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func TestDiscovery(t *testing.T) {
	ti := newTestIdP(t, nil)
	resp, body := getBody(t, ti.client, ti.issuer+"/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery status %d: %s", resp.StatusCode, body)
	}
	var doc struct {
		Issuer                 string   `json:"issuer"`
		AuthorizationEndpoint  string   `json:"authorization_endpoint"`
		TokenEndpoint          string   `json:"token_endpoint"`
		UserinfoEndpoint       string   `json:"userinfo_endpoint"`
		JWKSURI                string   `json:"jwks_uri"`
		EndSessionEndpoint     string   `json:"end_session_endpoint"`
		DeviceEndpoint         string   `json:"device_authorization_endpoint"`
		ScopesSupported        []string `json:"scopes_supported"`
		ResponseTypes          []string `json:"response_types_supported"`
		GrantTypes             []string `json:"grant_types_supported"`
		CodeChallengeMethods   []string `json:"code_challenge_methods_supported"`
		IDTokenSigningAlgs     []string `json:"id_token_signing_alg_values_supported"`
		ClaimsSupported        []string `json:"claims_supported"`
		TokenEndpointAuthMeths []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("discovery JSON: %v", err)
	}
	if doc.Issuer != ti.issuer {
		t.Errorf("issuer = %q, want %q", doc.Issuer, ti.issuer)
	}
	for name, ep := range map[string]string{
		"authorization": doc.AuthorizationEndpoint, "token": doc.TokenEndpoint,
		"userinfo": doc.UserinfoEndpoint, "jwks": doc.JWKSURI,
		"end_session": doc.EndSessionEndpoint, "device": doc.DeviceEndpoint,
	} {
		if !strings.HasPrefix(ep, ti.issuer+"/") {
			t.Errorf("%s endpoint %q is not below the issuer", name, ep)
		}
	}
	for _, c := range []struct {
		list []string
		want string
	}{
		{doc.ScopesSupported, "groups"},
		{doc.ScopesSupported, "openid"},
		{doc.ResponseTypes, "code"},
		{doc.GrantTypes, "authorization_code"},
		{doc.GrantTypes, "urn:ietf:params:oauth:grant-type:device_code"},
		{doc.CodeChallengeMethods, "S256"},
		{doc.IDTokenSigningAlgs, "RS256"},
		{doc.ClaimsSupported, "groups"},
		{doc.TokenEndpointAuthMeths, "none"},
	} {
		if !slices.Contains(c.list, c.want) {
			t.Errorf("discovery list %v lacks %q", c.list, c.want)
		}
	}
	if slices.Contains(doc.GrantTypes, "refresh_token") {
		t.Errorf("refresh_token advertised but not supported: %v", doc.GrantTypes)
	}

	resp, body = getBody(t, ti.client, doc.JWKSURI)
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
			Kty string `json:"kty"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &jwks); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks %d %v: %s", resp.StatusCode, err, body)
	}
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kid == "" || jwks.Keys[0].Alg != "RS256" || jwks.Keys[0].Use != "sig" || jwks.Keys[0].Kty != "RSA" {
		t.Errorf("jwks = %+v, want one RS256 signing key with a kid", jwks.Keys)
	}
	if jwks.Keys[0].D != "" {
		t.Fatalf("jwks leaks the private key")
	}

	// go-oidc accepts the document (it checks the issuer matches).
	if _, err := oidc.NewProvider(ti.ctx(t), ti.issuer); err != nil {
		t.Fatalf("go-oidc rejects discovery: %v", err)
	}
}

func TestCodeFlowPKCE(t *testing.T) {
	ti := newTestIdP(t, nil)
	redirect := loopbackRedirect(t, "127.0.0.1", "/callback")
	r := ti.rp(t, redirect)
	tests := []struct {
		user   string
		groups []string
		name   string
	}{
		{"alice", []string{"engineering"}, "Alice Engineer"},
		{"bob", []string{"dba", "engineering"}, "Bob DBA"},
		{"carol", []string{"security"}, "Carol Security"},
		{"dave", []string{"sre-leads"}, "Dave SRE Lead"},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			ctx := ti.ctx(t)
			verifier := oauth2.GenerateVerifier()
			state := "st-" + tc.user
			code := r.login(t, ti, tc.user, DemoPassword(tc.user), verifier, state)
			tok, err := r.config.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if tok.RefreshToken != "" {
				t.Errorf("unexpected refresh token")
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := r.verifier.Verify(ctx, raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if idt.Issuer != ti.issuer || !slices.Equal(idt.Audience, []string{testClientID}) {
				t.Errorf("iss=%q aud=%v", idt.Issuer, idt.Audience)
			}
			var c idClaims
			if err := idt.Claims(&c); err != nil {
				t.Fatalf("claims: %v", err)
			}
			want := idClaims{
				Sub: tc.user, Email: tc.user + "@example.com", EmailVerified: true,
				Name: tc.name, PreferredUsername: tc.user, Groups: tc.groups, Nonce: "nonce-" + state,
			}
			if c.Sub != want.Sub || c.Email != want.Email || !c.EmailVerified || c.Name != want.Name ||
				c.PreferredUsername != want.PreferredUsername || !slices.Equal(c.Groups, want.Groups) || c.Nonce != want.Nonce {
				t.Errorf("claims = %+v, want %+v", c, want)
			}
			if got := time.Duration(c.Exp-c.Iat) * time.Second; got != DefaultIDTokenLifetime {
				t.Errorf("ID token lifetime = %v, want %v", got, DefaultIDTokenLifetime)
			}

			// The access token works at userinfo.
			ui, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("UserInfo: %v", err)
			}
			var uc idClaims
			if err := ui.Claims(&uc); err != nil {
				t.Fatalf("userinfo claims: %v", err)
			}
			if uc.Sub != tc.user || uc.Email != want.Email || !slices.Equal(uc.Groups, tc.groups) {
				t.Errorf("userinfo = %+v", uc)
			}

			// A code is good once.
			if _, err := r.config.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err == nil {
				t.Errorf("code redeemed twice")
			}
		})
	}
}

func TestCodeFlowWithoutGroupsScope(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	r.config.Scopes = []string{oidc.ScopeOpenID, "email"}
	verifier := oauth2.GenerateVerifier()
	code := r.login(t, ti, "bob", DemoPassword("bob"), verifier, "s1")
	tok, err := r.config.Exchange(ti.ctx(t), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	idt, err := r.verifier.Verify(ti.ctx(t), tok.Extra("id_token").(string))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	var m map[string]any
	if err := idt.Claims(&m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["groups"]; ok {
		t.Errorf("groups claim without groups scope: %v", m)
	}
	if _, ok := m["name"]; ok {
		t.Errorf("profile claim without profile scope: %v", m)
	}
	if m["email"] != "bob@example.com" {
		t.Errorf("email = %v", m["email"])
	}
}

func TestCodeExchangeRefused(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	tests := []struct {
		name     string
		verifier func(good string) []oauth2.AuthCodeOption
		before   func()
		want     string
	}{
		{"wrong verifier", func(string) []oauth2.AuthCodeOption {
			return []oauth2.AuthCodeOption{oauth2.VerifierOption(oauth2.GenerateVerifier())}
		}, nil, "invalid_grant"},
		{"no verifier", func(string) []oauth2.AuthCodeOption { return nil }, nil, "invalid_request"},
		{"code expired", func(good string) []oauth2.AuthCodeOption {
			return []oauth2.AuthCodeOption{oauth2.VerifierOption(good)}
		}, func() { ti.clock.Advance(codeLifetime + time.Second) }, "invalid_grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			code := r.login(t, ti, "alice", DemoPassword("alice"), verifier, "s")
			if tc.before != nil {
				tc.before()
			}
			_, err := r.config.Exchange(ti.ctx(t), code, tc.verifier(verifier)...)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != tc.want {
				t.Fatalf("Exchange error = %v, want OAuth error %q", err, tc.want)
			}
		})
	}
}

func TestAuthorizeRequiresS256(t *testing.T) {
	ti := newTestIdP(t, nil)
	redirect := loopbackRedirect(t, "127.0.0.1", "/callback")
	r := ti.rp(t, redirect)
	tests := []struct {
		name string
		opts []oauth2.AuthCodeOption
	}{
		{"no challenge", nil},
		{"plain challenge", []oauth2.AuthCodeOption{
			oauth2.SetAuthURLParam("code_challenge", "abcdefghijabcdefghijabcdefghijabcdefghijabc"),
			oauth2.SetAuthURLParam("code_challenge_method", "plain"),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BrowserLogin(ti.ctx(t), ti.client, r.config.AuthCodeURL("s", tc.opts...), "alice", DemoPassword("alice"))
			if err != nil {
				t.Fatalf("BrowserLogin: %v", err)
			}
			u, _ := url.Parse(got)
			if u.Query().Get("error") != "invalid_request" || u.Query().Get("code") != "" || !strings.HasPrefix(got, redirect) {
				t.Fatalf("redirect = %q, want invalid_request error to the client", got)
			}
		})
	}
}

func TestBrowserLoginRefused(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	tests := []struct {
		name, user, password string
	}{
		{"wrong password", "alice", "alice"},
		{"other user's password", "alice", DemoPassword("bob")},
		{"unknown user", "mallory", DemoPassword("mallory")},
		{"empty password", "alice", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authURL := r.config.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
			_, err := BrowserLogin(ti.ctx(t), ti.client, authURL, tc.user, tc.password)
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("err = %v, want ErrInvalidCredentials", err)
			}
		})
	}
}

func TestRedirectURIMatching(t *testing.T) {
	ti := newTestIdP(t, nil)
	tests := []struct {
		name     string
		redirect string
		clientID string
		ok       bool
	}{
		{"registered loopback, runtime port", loopbackRedirect(t, "127.0.0.1", "/callback"), testClientID, true},
		{"another runtime port", loopbackRedirect(t, "127.0.0.1", "/callback"), testClientID, true},
		{"localhost, runtime port", loopbackRedirect(t, "localhost", "/callback"), testClientID, true},
		{"exact https", "https://console.example/auth/callback", testClientID, true},
		{"loopback, other path", loopbackRedirect(t, "127.0.0.1", "/other"), testClientID, false},
		{"loopback, path prefix", loopbackRedirect(t, "127.0.0.1", "/callback/x"), testClientID, false},
		{"loopback, extra query", loopbackRedirect(t, "127.0.0.1", "/callback?next=x"), testClientID, false},
		{"non-loopback host", "http://evil.example:8080/callback", testClientID, false},
		{"loopback-looking name", "http://127.0.0.1.evil.example/callback", testClientID, false},
		{"https on other host", "https://evil.example/callback", testClientID, false},
		{"exact https, other path", "https://console.example/other", testClientID, false},
		{"unknown client", loopbackRedirect(t, "127.0.0.1", "/callback"), "nobody", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ti.rp(t, tc.redirect)
			r.config.ClientID = tc.clientID
			authURL := r.config.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
			got, err := BrowserLogin(ti.ctx(t), ti.client, authURL, "alice", DemoPassword("alice"))
			if !tc.ok {
				var re *ResponseError
				if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
					t.Fatalf("BrowserLogin = %q, %v; want a 400 page and no redirect", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("BrowserLogin: %v", err)
			}
			u, _ := url.Parse(got)
			want, _ := url.Parse(tc.redirect)
			if u.Host != want.Host || u.Path != want.Path || u.Query().Get("code") == "" {
				t.Fatalf("redirect = %q, want code at %q", got, tc.redirect)
			}
		})
	}
}

func TestLoginRequestSingleUse(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	authURL := r.config.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	c := noRedirects(ti.client)
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loginURL, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	id := loginURL.Query().Get(FieldAuthRequestID)
	post := func() *http.Response {
		// A plain POST like `curl -d`: no Origin, no cookies.
		resp, err := c.PostForm(loginURL.String(), url.Values{
			FieldAuthRequestID: {id}, FieldUsername: {"alice"}, FieldPassword: {DemoPassword("alice")},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	first := post()
	if first.StatusCode != http.StatusSeeOther || !strings.Contains(first.Header.Get("Location"), "/dev-idp/authorize/callback?id=") {
		t.Fatalf("first login: %d %q", first.StatusCode, first.Header.Get("Location"))
	}
	if second := post(); second.StatusCode != http.StatusNotFound {
		t.Fatalf("second login with the same request: %d, want 404", second.StatusCode)
	}
	// The callback mints one code only.
	callback := first.Header.Get("Location")
	for i, want := range []string{"code=", "error="} {
		resp, err := c.Get(callback)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); !strings.Contains(loc, want) {
			t.Fatalf("callback #%d redirected to %q, want %q", i+1, loc, want)
		}
	}
}

func TestLoginRequestExpires(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, loopbackRedirect(t, "127.0.0.1", "/callback"))
	authURL := r.config.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	resp, err := noRedirects(ti.client).Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ti.clock.Advance(authRequestLifetime + time.Second)
	loginURL, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
	_, err = BrowserLogin(ti.ctx(t), ti.client, loginURL.String(), "alice", DemoPassword("alice"))
	if !errors.Is(err, ErrLoginExpired) {
		t.Fatalf("err = %v, want ErrLoginExpired", err)
	}
}
