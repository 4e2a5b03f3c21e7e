package devidp

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// FuzzDeviceForm feeds arbitrary bodies to the device verification form:
// the handler must answer one of its documented statuses and never reflect
// markup unescaped.
func FuzzDeviceForm(f *testing.F) {
	f.Add("user_code=BCDF-GHJK&username=alice&password=alice-dev-only")
	f.Add("user_code=%3Cscript%3E&username=%3Cb%3E&password=x&action=deny")
	f.Add("action=bogus")
	f.Add("%zz=&&&=")
	p, err := New(Config{
		Issuer: "https://127.0.0.1:8443/dev-idp", Users: DemoUsers(), Clients: defaultTestClients(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	// One real pending code so the fuzzer can reach the password check.
	if err := p.store.StoreDeviceAuthorization(f.Context(), testClientID, "dc", "BCDF-GHJK", time.Time{}, []string{"openid"}); err != nil {
		f.Fatal(err)
	}
	h := p.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "https://127.0.0.1:8443/dev-idp/device", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if strings.Contains(strings.ToLower(rec.Body.String()), "<script") {
			t.Fatalf("markup reflected for %q", body)
		}
		if rec.Code == http.StatusOK {
			// Only the one real code with alice's password can succeed; put it back.
			p.store.mu.Lock()
			delete(p.store.deviceCodes, "dc")
			delete(p.store.userCodes, "BCDFGHJK")
			p.store.mu.Unlock()
			if err := p.store.StoreDeviceAuthorization(t.Context(), testClientID, "dc", "BCDF-GHJK", time.Time{}, nil); err != nil && err != op.ErrDuplicateUserCode {
				t.Fatal(err)
			}
		}
	})
}

// FuzzParseSigningKey: the key file parser never panics and only yields
// keys it can sign with.
func FuzzParseSigningKey(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("not pem"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parseSigningKey(data)
		if err != nil {
			return
		}
		if k.id == "" || (k.alg != "RS256" && k.alg != "ES256") {
			t.Fatalf("parsed key with id %q alg %q", k.id, k.alg)
		}
	})
}
