package sshauth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Sentinel errors returned (wrapped) by Verify. Callers answer all of them
// with 401, except ErrNonceCacheFull (503) and ErrNoVerifierConfig (500).
var (
	// ErrNoCredentials: no Authorization header, or another scheme. A
	// server may try its other authentication methods.
	ErrNoCredentials = errors.New("sshauth: no SSH certificate credentials")
	// ErrMalformed: a header is present but cannot be parsed, or too big.
	ErrMalformed = errors.New("sshauth: malformed credentials")
	// ErrBadSignature: the request signature does not verify with the
	// certificate's key, or uses an algorithm that does not match it.
	ErrBadSignature = errors.New("sshauth: bad request signature")
	// ErrSkew: the signed timestamp is too far from the server's clock.
	ErrSkew = errors.New("sshauth: request time outside allowed skew")
	// ErrReplay: the nonce was already used.
	ErrReplay = errors.New("sshauth: replayed request")
	// ErrCertRejected: not a user certificate, or the Checker refused it
	// (unknown CA, expired, revoked); the Checker's error is wrapped too.
	ErrCertRejected = errors.New("sshauth: certificate rejected")
	// ErrWrongHost: the request's Host is not one the Verifier serves.
	ErrWrongHost = errors.New("sshauth: request addressed to another host")
	// ErrNoVerifierConfig: the Verifier has no Checker.
	ErrNoVerifierConfig = errors.New("sshauth: verifier has no certificate checker")
)

// DefaultMaxSkew is used when Verifier.MaxSkew is zero.
const DefaultMaxSkew = 2 * time.Minute

// Verifier checks requests signed by SignRequest. Its zero value is not
// usable: Checker is required. Do not copy a Verifier after first use.
type Verifier struct {
	// Checker decides whether the certificate is trusted: signed by the
	// user CA, inside its validity window, not revoked. Required; see
	// CAChecker for the usual one.
	Checker func(cert *ssh.Certificate) error
	// Clock defaults to time.Now.
	Clock func() time.Time
	// MaxSkew is how far the signed time may be from Clock, either way;
	// default DefaultMaxSkew.
	MaxSkew time.Duration
	// Nonces is the replay cache; nil means a MemoryNonceCache of
	// DefaultNonceCacheSize entries created on first use.
	Nonces NonceCache
	// Hosts, when not empty, lists the Host header values (host or
	// host:port, compared case-insensitively) this server answers to; a
	// request signed for any other host is refused with ErrWrongHost. The
	// host is always covered by the signature.
	Hosts []string

	once   sync.Once
	nonces NonceCache
}

// Verify authenticates r, whose body the caller has already read into body
// (nil or empty for none), and returns the caller's certificate. Errors wrap
// the sentinels above.
func (v *Verifier) Verify(r *http.Request, body []byte) (*ssh.Certificate, error) {
	if v.Checker == nil {
		return nil, ErrNoVerifierConfig
	}
	v.once.Do(func() {
		v.nonces = v.Nonces
		if v.nonces == nil {
			v.nonces = NewMemoryNonceCache(DefaultNonceCacheSize)
		}
	})
	clock := v.Clock
	if clock == nil {
		clock = time.Now
	}
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}

	auth := r.Header.Values("Authorization")
	if len(auth) > 1 {
		return nil, fmt.Errorf("%w: %d Authorization headers", ErrMalformed, len(auth))
	}
	var authValue string
	if len(auth) == 1 {
		authValue = auth[0]
	}
	certBytes, err := parseAuthorization(authValue)
	if err != nil {
		return nil, err
	}
	sigHeaders := r.Header.Values(SignatureHeader)
	if len(sigHeaders) != 1 {
		return nil, fmt.Errorf("%w: want one %s header, got %d", ErrMalformed, SignatureHeader, len(sigHeaders))
	}
	p, err := parseSignatureHeader(sigHeaders[0])
	if err != nil {
		return nil, err
	}

	pub, err := ssh.ParsePublicKey(certBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrMalformed, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%w: credentials are a plain %s key, not a certificate", ErrMalformed, pub.Type())
	}
	if cert.CertType != ssh.UserCert {
		return nil, fmt.Errorf("%w: not a user certificate (type %d)", ErrCertRejected, cert.CertType)
	}

	now := clock()
	signed := time.Unix(p.Time, 0)
	if d := now.Sub(signed); d > skew || d < -skew {
		return nil, fmt.Errorf("%w: signed at %s, server time %s", ErrSkew, signed.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	if len(v.Hosts) > 0 && !slices.ContainsFunc(v.Hosts, func(h string) bool { return strings.EqualFold(h, r.Host) }) {
		return nil, fmt.Errorf("%w: %q", ErrWrongHost, clip(r.Host))
	}

	var sig ssh.Signature
	if err := ssh.Unmarshal(p.Sig, &sig); err != nil {
		return nil, fmt.Errorf("%w: signature encoding: %w", ErrMalformed, err)
	}
	if len(sig.Rest) != 0 {
		return nil, fmt.Errorf("%w: unexpected trailing signature data", ErrBadSignature)
	}
	algos, ok := signatureAlgorithms[cert.Key.Type()]
	if !ok {
		return nil, fmt.Errorf("%w: key type %s not supported", ErrBadSignature, cert.Key.Type())
	}
	if !slices.Contains(algos, sig.Format) {
		return nil, fmt.Errorf("%w: signature algorithm %q does not match key type %s", ErrBadSignature, clip(sig.Format), cert.Key.Type())
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	data := canonicalString(requestMethod(r.Method), r.Host, uri, p.Time, p.Nonce, body)
	if err := cert.Key.Verify(data, &sig); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}

	if err := v.Checker(cert); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertRejected, err)
	}

	// Only authenticated, trusted requests reach the cache, so an outsider
	// cannot fill it. Nonces are scoped to the certificate's key.
	keyHash := sha256.Sum256(cert.Key.Marshal())
	entry := hex.EncodeToString(keyHash[:]) + "/" + p.Nonce
	if err := v.nonces.CheckAndStore(entry, signed.Add(skew+time.Second), now); err != nil {
		return nil, err
	}
	return cert, nil
}

// CAChecker returns a Verifier.Checker that accepts user certificates signed
// by one of cas, currently valid by clock (nil: time.Now), with at least one
// principal, no critical options, and not revoked (isRevoked may be nil).
func CAChecker(cas []ssh.PublicKey, isRevoked func(*ssh.Certificate) bool, clock func() time.Time) func(*ssh.Certificate) error {
	trusted := make([][]byte, len(cas))
	for i, k := range cas {
		trusted[i] = k.Marshal()
	}
	return func(cert *ssh.Certificate) error {
		if cert.CertType != ssh.UserCert {
			return errors.New("sshauth: not a user certificate")
		}
		if cert.SignatureKey == nil {
			return errors.New("sshauth: certificate has no signature key")
		}
		ca := cert.SignatureKey.Marshal()
		if !slices.ContainsFunc(trusted, func(t []byte) bool { return bytes.Equal(t, ca) }) {
			return errors.New("sshauth: certificate not signed by a trusted user CA")
		}
		if len(cert.ValidPrincipals) == 0 {
			return errors.New("sshauth: certificate has no principals")
		}
		cc := ssh.CertChecker{Clock: clock, IsRevoked: isRevoked}
		if err := cc.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
			return fmt.Errorf("sshauth: %w", err)
		}
		return nil
	}
}
