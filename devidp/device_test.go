package devidp

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestDeviceFlow(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, "")
	tests := []struct {
		name string
		// complete performs the user's part given the device response.
		complete func(t *testing.T, da *oauth2.DeviceAuthResponse) error
	}{
		{"CompleteDeviceLogin", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			return CompleteDeviceLogin(ti.ctx(t), ti.client, da.VerificationURI, da.UserCode, "carol", DemoPassword("carol"))
		}},
		{"complete URI, code typed sloppily", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			// The user code comes from verification_uri_complete.
			if !strings.Contains(da.VerificationURIComplete, "user_code=") {
				t.Fatalf("verification_uri_complete = %q", da.VerificationURIComplete)
			}
			return CompleteDeviceLogin(ti.ctx(t), ti.client, da.VerificationURIComplete, "", "carol", DemoPassword("carol"))
		}},
		{"lowercase without dash", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			code := strings.ToLower(strings.ReplaceAll(da.UserCode, "-", " "))
			return CompleteDeviceLogin(ti.ctx(t), ti.client, da.VerificationURI, code, "carol", DemoPassword("carol"))
		}},
		{"plain curl-style POST", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			resp, err := ti.client.PostForm(da.VerificationURI, url.Values{
				"user_code": {da.UserCode}, "username": {"carol"}, "password": {DemoPassword("carol")},
			})
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("curl-style POST: %d", resp.StatusCode)
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ti.ctx(t)
			da, err := r.config.DeviceAuth(ctx)
			if err != nil {
				t.Fatalf("DeviceAuth: %v", err)
			}
			if da.VerificationURI != ti.p.DeviceVerificationURI() || !strings.HasPrefix(da.VerificationURI, ti.issuer+"/") {
				t.Fatalf("verification_uri = %q, want %q", da.VerificationURI, ti.p.DeviceVerificationURI())
			}
			if da.Interval != 1 {
				t.Errorf("interval = %d, want 1", da.Interval)
			}
			form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {da.DeviceCode}, "client_id": {testClientID}}
			if got := ti.tokenEndpointError(t, r.config.Endpoint.TokenURL, form); got != "authorization_pending" {
				t.Fatalf("poll before login: %q, want authorization_pending", got)
			}
			if err := tc.complete(t, da); err != nil {
				t.Fatalf("completing the device login: %v", err)
			}
			tok, err := r.config.DeviceAccessToken(ctx, da)
			if err != nil {
				t.Fatalf("DeviceAccessToken: %v", err)
			}
			idt, err := r.verifier.Verify(ctx, tok.Extra("id_token").(string))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			var c idClaims
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			if c.Sub != "carol" || c.Email != "carol@example.com" || !c.EmailVerified || !slices.Equal(c.Groups, []string{"security"}) || c.PreferredUsername != "carol" {
				t.Errorf("claims = %+v", c)
			}
			if !slices.Equal(idt.Audience, []string{testClientID}) || idt.Issuer != ti.issuer {
				t.Errorf("aud=%v iss=%q", idt.Audience, idt.Issuer)
			}
			// The device code is spent, and the user code with it.
			if got := ti.tokenEndpointError(t, r.config.Endpoint.TokenURL, form); got == "" {
				t.Errorf("device code redeemed twice")
			}
			err = CompleteDeviceLogin(ctx, ti.client, da.VerificationURI, da.UserCode, "carol", DemoPassword("carol"))
			if !errors.Is(err, ErrInvalidUserCode) {
				t.Errorf("reusing the user code: %v, want ErrInvalidUserCode", err)
			}
		})
	}
}

func TestDeviceFlowRefused(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, "")
	tests := []struct {
		name      string
		act       func(t *testing.T, da *oauth2.DeviceAuthResponse) error
		wantErr   error
		wantPoll  string
		afterPoll string
	}{
		{"wrong password", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			return CompleteDeviceLogin(ti.ctx(t), ti.client, da.VerificationURI, da.UserCode, "dave", "wrong")
		}, ErrInvalidCredentials, "authorization_pending", ""},
		{"unknown user", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			return CompleteDeviceLogin(ti.ctx(t), ti.client, da.VerificationURI, da.UserCode, "mallory", DemoPassword("mallory"))
		}, ErrInvalidCredentials, "authorization_pending", ""},
		{"unknown user code", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			return CompleteDeviceLogin(ti.ctx(t), ti.client, da.VerificationURI, "BCDF-GHJK-X", "dave", DemoPassword("dave"))
		}, ErrInvalidUserCode, "authorization_pending", ""},
		{"expired", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			ti.clock.Advance(DefaultDeviceCodeLifetime + time.Second)
			return CompleteDeviceLogin(ti.ctx(t), ti.client, da.VerificationURI, da.UserCode, "dave", DemoPassword("dave"))
		}, ErrInvalidUserCode, "expired_token", ""},
		{"denied", func(t *testing.T, da *oauth2.DeviceAuthResponse) error {
			resp, err := ti.client.PostForm(da.VerificationURI, url.Values{
				"user_code": {da.UserCode}, "username": {"dave"}, "password": {DemoPassword("dave")}, "action": {"deny"},
			})
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("deny: %d", resp.StatusCode)
			}
			return nil
		}, nil, "access_denied", "access_denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			da, err := r.config.DeviceAuth(ti.ctx(t))
			if err != nil {
				t.Fatalf("DeviceAuth: %v", err)
			}
			err = tc.act(t, da)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {da.DeviceCode}, "client_id": {testClientID}}
			if got := ti.tokenEndpointError(t, r.config.Endpoint.TokenURL, form); got != tc.wantPoll {
				t.Fatalf("poll = %q, want %q", got, tc.wantPoll)
			}
			if tc.afterPoll != "" {
				if got := ti.tokenEndpointError(t, r.config.Endpoint.TokenURL, form); got != tc.afterPoll {
					t.Fatalf("second poll = %q, want %q", got, tc.afterPoll)
				}
			}
		})
	}
}

func TestDeviceUnknownClient(t *testing.T) {
	ti := newTestIdP(t, nil)
	r := ti.rp(t, "")
	r.config.ClientID = "nobody"
	if _, err := r.config.DeviceAuth(ti.ctx(t)); err == nil {
		t.Fatal("device authorization for an unknown client succeeded")
	}
}
