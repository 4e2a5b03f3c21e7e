package sshauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

const (
	// AuthScheme is the HTTP authentication scheme carrying the certificate.
	AuthScheme = "SSH-Cert"
	// SignatureHeader carries the timestamp, nonce and signature.
	SignatureHeader = "X-Jumpgate-Signature"
	// canonicalPrefix versions the signed string so that a signature made
	// for this scheme is never valid for any other use of the key.
	canonicalPrefix = "jumpgate-api-v1\n"

	// MaxAuthorizationBytes bounds the Authorization header: a certificate
	// with a 4096-bit RSA key, a CA signature and many principals stays well
	// under it.
	MaxAuthorizationBytes = 16 << 10
	// MaxSignatureHeaderBytes bounds the X-Jumpgate-Signature header.
	MaxSignatureHeaderBytes = 2 << 10

	// nonceBytes is what the client draws; the verifier accepts 16 to 32
	// bytes, hex encoded in lower case.
	nonceBytes    = 16
	minNonceChars = 2 * 16
	maxNonceChars = 2 * 32
)

// sigParams is the parsed X-Jumpgate-Signature header.
type sigParams struct {
	Time  int64  // t: unix seconds
	Nonce string // n: lower-case hex
	Sig   []byte // s: ssh.Signature wire bytes
}

// String formats the header value; parseSignatureHeader(p.String())
// returns p.
func (p sigParams) String() string {
	return "t=" + strconv.FormatInt(p.Time, 10) +
		", n=" + p.Nonce +
		", s=" + base64.StdEncoding.EncodeToString(p.Sig)
}

// parseSignatureHeader parses `t=<unix>, n=<hex>, s=<base64>`. Each key must
// appear exactly once; unknown keys, signs, leading zeros, upper-case hex and
// non-canonical base64 are refused so that one signature has one spelling.
func parseSignatureHeader(v string) (sigParams, error) {
	var p sigParams
	if len(v) > MaxSignatureHeaderBytes {
		return p, fmt.Errorf("%w: %s header is %d bytes, limit %d", ErrMalformed, SignatureHeader, len(v), MaxSignatureHeaderBytes)
	}
	var seenT, seenN, seenS bool
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		key, val, ok := strings.Cut(part, "=")
		if !ok || val == "" {
			return p, fmt.Errorf("%w: %s: want key=value, got %q", ErrMalformed, SignatureHeader, clip(part))
		}
		switch key {
		case "t":
			if seenT {
				return p, fmt.Errorf("%w: %s: t repeated", ErrMalformed, SignatureHeader)
			}
			seenT = true
			if (len(val) > 1 && val[0] == '0') || strings.IndexFunc(val, notDigit) >= 0 || len(val) > 18 {
				return p, fmt.Errorf("%w: %s: t is not a unix time", ErrMalformed, SignatureHeader)
			}
			t, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return p, fmt.Errorf("%w: %s: t: %w", ErrMalformed, SignatureHeader, err)
			}
			p.Time = t
		case "n":
			if seenN {
				return p, fmt.Errorf("%w: %s: n repeated", ErrMalformed, SignatureHeader)
			}
			seenN = true
			if len(val) < minNonceChars || len(val) > maxNonceChars || len(val)%2 != 0 || strings.IndexFunc(val, notLowerHex) >= 0 {
				return p, fmt.Errorf("%w: %s: n must be %d to %d lower-case hex digits", ErrMalformed, SignatureHeader, minNonceChars, maxNonceChars)
			}
			p.Nonce = val
		case "s":
			if seenS {
				return p, fmt.Errorf("%w: %s: s repeated", ErrMalformed, SignatureHeader)
			}
			seenS = true
			sig, err := base64.StdEncoding.Strict().DecodeString(val)
			if err != nil {
				return p, fmt.Errorf("%w: %s: s: %w", ErrMalformed, SignatureHeader, err)
			}
			p.Sig = sig
		default:
			return p, fmt.Errorf("%w: %s: unknown key %q", ErrMalformed, SignatureHeader, clip(key))
		}
	}
	if !seenT || !seenN || !seenS {
		return p, fmt.Errorf("%w: %s needs t, n and s", ErrMalformed, SignatureHeader)
	}
	return p, nil
}

// parseAuthorization returns the certificate wire bytes of an
// `Authorization: SSH-Cert <base64>` header. A header with another scheme, or
// none, is ErrNoCredentials so that callers can try other schemes.
func parseAuthorization(v string) ([]byte, error) {
	if v == "" {
		return nil, fmt.Errorf("%w: no Authorization header", ErrNoCredentials)
	}
	scheme, rest, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, AuthScheme) {
		return nil, fmt.Errorf("%w: Authorization scheme is not %s", ErrNoCredentials, AuthScheme)
	}
	if len(v) > MaxAuthorizationBytes {
		return nil, fmt.Errorf("%w: Authorization header is %d bytes, limit %d", ErrMalformed, len(v), MaxAuthorizationBytes)
	}
	rest = strings.TrimSpace(rest)
	if rest == "" {
		return nil, fmt.Errorf("%w: empty %s credentials", ErrMalformed, AuthScheme)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: %s credentials: %w", ErrMalformed, AuthScheme, err)
	}
	return b, nil
}

// canonicalString is what the client signs and the server verifies.
func canonicalString(method, host, requestURI string, t int64, nonce string, body []byte) []byte {
	sum := sha256.Sum256(body)
	var b strings.Builder
	b.Grow(len(canonicalPrefix) + len(method) + len(host) + len(requestURI) + len(nonce) + 100)
	b.WriteString(canonicalPrefix)
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(host)
	b.WriteByte('\n')
	b.WriteString(requestURI)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatInt(t, 10))
	b.WriteByte('\n')
	b.WriteString(nonce)
	b.WriteByte('\n')
	b.WriteString(hex.EncodeToString(sum[:]))
	return []byte(b.String())
}

func notDigit(r rune) bool    { return r < '0' || r > '9' }
func notLowerHex(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }

// clip shortens attacker-controlled text before it goes into an error.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
