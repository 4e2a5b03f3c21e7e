package sshauth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type fixture struct {
	ca       ssh.Signer
	signer   ssh.Signer // cert signer for alice
	cert     *ssh.Certificate
	verifier *Verifier
	now      time.Time
}

func newSigner(t *testing.T) ssh.Signer {
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

func issue(t *testing.T, ca, key ssh.Signer, typ uint32, serial uint64, validBefore time.Time) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key:             key.PublicKey(),
		Serial:          serial,
		CertType:        typ,
		KeyId:           fmt.Sprintf("alice/%d", serial),
		ValidPrincipals: []string{"ubuntu"},
		ValidAfter:      uint64(t0.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(validBefore.Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func certSigner(t *testing.T, cert *ssh.Certificate, key ssh.Signer) ssh.Signer {
	t.Helper()
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{ca: newSigner(t), now: t0}
	key := newSigner(t)
	f.cert = issue(t, f.ca, key, ssh.UserCert, 7, t0.Add(time.Hour))
	f.signer = certSigner(t, f.cert, key)
	clock := func() time.Time { return f.now }
	f.verifier = &Verifier{
		Checker: CAChecker([]ssh.PublicKey{f.ca.PublicKey()}, nil, clock),
		Clock:   clock,
		Nonces:  NewMemoryNonceCache(100),
	}
	return f
}

// signed builds a client request, signs it, and returns the request as the
// server would see it.
func signed(t *testing.T, signer ssh.Signer, method, url string, body []byte, now time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := SignRequest(req, body, signer, now, rand.Reader); err != nil {
		t.Fatal(err)
	}
	return serverSide(req)
}

func serverSide(req *http.Request) *http.Request {
	r := httptest.NewRequest(req.Method, req.URL.RequestURI(), nil)
	r.Host = req.URL.Host
	if req.Host != "" {
		r.Host = req.Host
	}
	r.Header = req.Header.Clone()
	return r
}

// wrongKeySigner presents cert but signs with another key.
type wrongKeySigner struct {
	cert  *ssh.Certificate
	other ssh.Signer
}

func (w wrongKeySigner) PublicKey() ssh.PublicKey { return w.cert }
func (w wrongKeySigner) Sign(r io.Reader, d []byte) (*ssh.Signature, error) {
	return w.other.Sign(r, d)
}

func TestVerify(t *testing.T) {
	const url = "https://jumpgate.example.com:8443/v1/audit?since=1h&user=alice%40example.com"
	body := []byte(`{"reason":"deploy"}`)

	tests := []struct {
		name    string
		prepare func(t *testing.T, f *fixture) (*http.Request, []byte)
		wantErr error
	}{
		{"valid", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			return signed(t, f.signer, "POST", url, body, f.now), body
		}, nil},
		{"valid empty body", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			return signed(t, f.signer, "GET", url, nil, f.now), nil
		}, nil},
		{"tampered method", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.Method = "DELETE"
			return r, body
		}, ErrBadSignature},
		{"tampered path", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.RequestURI = "/v1/requests?since=1h&user=alice%40example.com"
			return r, body
		}, ErrBadSignature},
		{"tampered query", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.RequestURI = "/v1/audit?since=1h&user=bob%40example.com"
			return r, body
		}, ErrBadSignature},
		{"tampered body", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			return signed(t, f.signer, "POST", url, body, f.now), []byte(`{"reason":"deploY"}`)
		}, ErrBadSignature},
		{"tampered host", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.Host = "evil.example.com:8443"
			return r, body
		}, ErrBadSignature},
		{"tampered time", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			h := r.Header.Get(SignatureHeader)
			ts := fmt.Sprint(f.now.Unix())
			r.Header.Set(SignatureHeader, strings.Replace(h, "t="+ts, fmt.Sprint("t=", f.now.Unix()+1), 1))
			return r, body
		}, ErrBadSignature},
		{"tampered nonce", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			p, err := parseSignatureHeader(r.Header.Get(SignatureHeader))
			if err != nil {
				t.Fatal(err)
			}
			p.Nonce = strings.Repeat("ab", 16)
			r.Header.Set(SignatureHeader, p.String())
			return r, body
		}, ErrBadSignature},
		{"signed too long ago", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			return signed(t, f.signer, "POST", url, body, f.now.Add(-3*time.Minute)), body
		}, ErrSkew},
		{"signed in the future", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			return signed(t, f.signer, "POST", url, body, f.now.Add(3*time.Minute)), body
		}, ErrSkew},
		{"inside skew", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			return signed(t, f.signer, "POST", url, body, f.now.Add(-119*time.Second)), body
		}, nil},
		{"wrong key", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			return signed(t, wrongKeySigner{f.cert, newSigner(t)}, "POST", url, body, f.now), body
		}, ErrBadSignature},
		{"host cert", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			key := newSigner(t)
			hc := issue(t, f.ca, key, ssh.HostCert, 8, t0.Add(time.Hour))
			// SignRequest refuses host certs, so sign by hand.
			req := signed(t, f.signer, "POST", url, body, f.now)
			p, _ := parseSignatureHeader(req.Header.Get(SignatureHeader))
			sig, err := key.Sign(rand.Reader, canonicalString("POST", req.Host, req.RequestURI, p.Time, p.Nonce, body))
			if err != nil {
				t.Fatal(err)
			}
			p.Sig = ssh.Marshal(sig)
			req.Header.Set("Authorization", AuthScheme+" "+base64.StdEncoding.EncodeToString(hc.Marshal()))
			req.Header.Set(SignatureHeader, p.String())
			return req, body
		}, ErrCertRejected},
		{"plain key instead of cert", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.Header.Set("Authorization", AuthScheme+" "+base64.StdEncoding.EncodeToString(f.cert.Key.Marshal()))
			return r, body
		}, ErrMalformed},
		{"untrusted CA", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			key := newSigner(t)
			c := issue(t, newSigner(t), key, ssh.UserCert, 9, t0.Add(time.Hour))
			return signed(t, certSigner(t, c, key), "POST", url, body, f.now), body
		}, ErrCertRejected},
		{"expired cert", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			key := newSigner(t)
			c := issue(t, f.ca, key, ssh.UserCert, 10, t0.Add(-time.Second))
			return signed(t, certSigner(t, c, key), "POST", url, body, f.now), body
		}, ErrCertRejected},
		{"algorithm mismatch", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			p, _ := parseSignatureHeader(r.Header.Get(SignatureHeader))
			var sig ssh.Signature
			if err := ssh.Unmarshal(p.Sig, &sig); err != nil {
				t.Fatal(err)
			}
			sig.Format = ssh.KeyAlgoRSASHA256
			p.Sig = ssh.Marshal(sig)
			r.Header.Set(SignatureHeader, p.String())
			return r, body
		}, ErrBadSignature},
		{"no credentials", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			return httptest.NewRequest("GET", "/v1/audit", nil), nil
		}, ErrNoCredentials},
		{"bearer scheme", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := httptest.NewRequest("GET", "/v1/audit", nil)
			r.Header.Set("Authorization", "Bearer eyJ.x.y")
			return r, nil
		}, ErrNoCredentials},
		{"missing signature header", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.Header.Del(SignatureHeader)
			return r, body
		}, ErrMalformed},
		{"two signature headers", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.Header.Add(SignatureHeader, r.Header.Get(SignatureHeader))
			return r, body
		}, ErrMalformed},
		{"oversized authorization", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.Header.Set("Authorization", AuthScheme+" "+strings.Repeat("A", MaxAuthorizationBytes))
			return r, body
		}, ErrMalformed},
		{"oversized signature header", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.Header.Set(SignatureHeader, r.Header.Get(SignatureHeader)+", x="+strings.Repeat("a", MaxSignatureHeaderBytes))
			return r, body
		}, ErrMalformed},
		{"garbage certificate", func(t *testing.T, f *fixture) (*http.Request, []byte) {
			r := signed(t, f.signer, "POST", url, body, f.now)
			r.Header.Set("Authorization", AuthScheme+" "+base64.StdEncoding.EncodeToString([]byte("not a cert")))
			return r, body
		}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r, b := tt.prepare(t, f)
			cert, err := f.verifier.Verify(r, b)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if cert.KeyId != f.cert.KeyId {
					t.Fatalf("KeyId = %q, want %q", cert.KeyId, f.cert.KeyId)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
			if cert != nil {
				t.Fatalf("Verify returned a certificate with error %v", err)
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	f := newFixture(t)
	body := []byte("x")
	r := signed(t, f.signer, "PUT", "https://h.example/v1/requests/1", body, f.now)
	if _, err := f.verifier.Verify(r, body); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	if _, err := f.verifier.Verify(r, body); !errors.Is(err, ErrReplay) {
		t.Fatalf("second Verify = %v, want ErrReplay", err)
	}
	// Once the timestamp is out of the skew window the replay is refused
	// as skew, and the cache entry is gone.
	f.now = f.now.Add(DefaultMaxSkew + 2*time.Second)
	if _, err := f.verifier.Verify(r, body); !errors.Is(err, ErrSkew) {
		t.Fatalf("late Verify = %v, want ErrSkew", err)
	}
	// A fresh request from the same key is fine.
	r2 := signed(t, f.signer, "PUT", "https://h.example/v1/requests/1", body, f.now)
	if _, err := f.verifier.Verify(r2, body); err != nil {
		t.Fatalf("fresh Verify: %v", err)
	}
	if n := f.verifier.Nonces.(*MemoryNonceCache).Len(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1 (expired one dropped)", n)
	}
}

func TestVerifyHosts(t *testing.T) {
	f := newFixture(t)
	f.verifier.Hosts = []string{"jumpgate.example.com:8443"}
	ok := signed(t, f.signer, "GET", "https://JUMPGATE.example.com:8443/v1/x", nil, f.now)
	if _, err := f.verifier.Verify(ok, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	other := signed(t, f.signer, "GET", "https://other.example.com:8443/v1/x", nil, f.now)
	if _, err := f.verifier.Verify(other, nil); !errors.Is(err, ErrWrongHost) {
		t.Fatalf("Verify = %v, want ErrWrongHost", err)
	}
}

func TestVerifyRevoked(t *testing.T) {
	f := newFixture(t)
	f.verifier.Checker = CAChecker([]ssh.PublicKey{f.ca.PublicKey()},
		func(c *ssh.Certificate) bool { return c.Serial == 7 }, func() time.Time { return f.now })
	r := signed(t, f.signer, "GET", "https://h.example/v1/x", nil, f.now)
	if _, err := f.verifier.Verify(r, nil); !errors.Is(err, ErrCertRejected) {
		t.Fatalf("Verify = %v, want ErrCertRejected", err)
	}
	// A refused request must not consume the nonce cache.
	if n := f.verifier.Nonces.(*MemoryNonceCache).Len(); n != 0 {
		t.Fatalf("cache holds %d entries after a refused request", n)
	}
}

func TestVerifierNeedsChecker(t *testing.T) {
	var v Verifier
	if _, err := v.Verify(httptest.NewRequest("GET", "/", nil), nil); !errors.Is(err, ErrNoVerifierConfig) {
		t.Fatalf("Verify = %v, want ErrNoVerifierConfig", err)
	}
}

func TestSignRequestRefuses(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("GET", "https://h.example/", nil)
	if err := SignRequest(req, nil, newSigner(t), t0, rand.Reader); err == nil {
		t.Fatal("SignRequest accepted a plain key signer")
	}
	key := newSigner(t)
	hc := certSigner(t, issue(t, f.ca, key, ssh.HostCert, 1, t0.Add(time.Hour)), key)
	if err := SignRequest(req, nil, hc, t0, rand.Reader); err == nil {
		t.Fatal("SignRequest accepted a host certificate")
	}
	if err := SignRequest(req, nil, f.signer, t0, bytes.NewReader(nil)); err == nil {
		t.Fatal("SignRequest succeeded without randomness")
	}
}

func TestRSAUsesSHA2(t *testing.T) {
	f := newFixture(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewSignerFromKey(rk)
	if err != nil {
		t.Fatal(err)
	}
	c := issue(t, f.ca, key, ssh.UserCert, 11, t0.Add(time.Hour))
	r := signed(t, certSigner(t, c, key), "GET", "https://h.example/v1/x", nil, f.now)
	if _, err := f.verifier.Verify(r, nil); err != nil {
		t.Fatalf("Verify RSA: %v", err)
	}
	// A SHA-1 "ssh-rsa" signature over the right data is refused.
	r = signed(t, certSigner(t, c, key), "GET", "https://h.example/v1/x", nil, f.now)
	p, _ := parseSignatureHeader(r.Header.Get(SignatureHeader))
	sig, err := key.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader,
		canonicalString("GET", r.Host, r.RequestURI, p.Time, p.Nonce, nil), ssh.KeyAlgoRSA)
	if err != nil {
		t.Fatal(err)
	}
	p.Sig = ssh.Marshal(sig)
	r.Header.Set(SignatureHeader, p.String())
	if _, err := f.verifier.Verify(r, nil); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify ssh-rsa = %v, want ErrBadSignature", err)
	}
}

// TestOverHTTP checks that what the client signs is what a real server
// sees on the wire (escaped paths, queries, host with port).
func TestOverHTTP(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cert, err := f.verifier.Verify(r, b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, cert.KeyId)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	for _, path := range []string{"/v1/sessions/a%2Fb?x=%20y&z=1", "/v1/audit", "/v1/requests/1/approve?reason=ok+then"} {
		body := []byte(`{"a":1}`)
		req, err := http.NewRequest("POST", srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := SignRequest(req, body, f.signer, f.now, rand.Reader); err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", path, resp.StatusCode, msg)
		}
	}
	if len(got) != 3 || got[0] != "alice/7" {
		t.Fatalf("verified key ids = %v", got)
	}
}

func TestNonceCacheBounded(t *testing.T) {
	c := NewMemoryNonceCache(2)
	exp := t0.Add(time.Minute)
	if err := c.CheckAndStore("a", exp, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckAndStore("b", t0.Add(2*time.Minute), t0); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckAndStore("c", exp, t0); !errors.Is(err, ErrNonceCacheFull) {
		t.Fatalf("third entry = %v, want ErrNonceCacheFull", err)
	}
	if err := c.CheckAndStore("a", exp, t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("repeat = %v, want ErrReplay", err)
	}
	// After "a" expires there is room again, and "b" is still remembered.
	later := exp.Add(time.Second)
	if err := c.CheckAndStore("c", later.Add(time.Minute), later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if err := c.CheckAndStore("b", later.Add(time.Minute), later); !errors.Is(err, ErrReplay) {
		t.Fatalf("b = %v, want ErrReplay", err)
	}
	if c.Len() != 2 {
		t.Fatalf("Len = %d, want 2", c.Len())
	}
}

func TestParseSignatureHeader(t *testing.T) {
	sig := base64.StdEncoding.EncodeToString([]byte("sig"))
	n := strings.Repeat("0f", 16)
	tests := []struct {
		in string
		ok bool
	}{
		{"t=1700000000, n=" + n + ", s=" + sig, true},
		{"t=1700000000,n=" + n + ",s=" + sig, true},
		{"s=" + sig + ", t=1, n=" + n, true},
		{"t=1700000000, n=" + n, false},
		{"t=1700000000, t=1, n=" + n + ", s=" + sig, false},
		{"t=-1, n=" + n + ", s=" + sig, false},
		{"t=+1, n=" + n + ", s=" + sig, false},
		{"t=01, n=" + n + ", s=" + sig, false},
		{"t=1, n=" + strings.ToUpper(n) + ", s=" + sig, false},
		{"t=1, n=abc, s=" + sig, false},
		{"t=1, n=" + n + ", s=!!", false},
		{"t=1, n=" + n + ", s=" + sig + ", x=1", false},
		{"t=1, n=" + n + ", s=" + sig + ",", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := parseSignatureHeader(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if tt.ok && string(p.Sig) != "sig" {
				t.Fatalf("Sig = %q", p.Sig)
			}
		})
	}
}
