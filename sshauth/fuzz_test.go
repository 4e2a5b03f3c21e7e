package sshauth

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseSignatureHeader checks that the X-Jumpgate-Signature parser never
// panics, only fails with ErrMalformed, and that what it accepts has a
// single canonical spelling that round-trips.
func FuzzParseSignatureHeader(f *testing.F) {
	f.Add("t=1700000000, n=00112233445566778899aabbccddeeff, s=AAAAC3NzaC1lZDI1NTE5")
	f.Add("t=1, n=00112233445566778899aabbccddeeff, s=")
	f.Add("t=1,t=2")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := parseSignatureHeader(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		q, err := parseSignatureHeader(p.String())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", p.String(), err)
		}
		if q.Time != p.Time || q.Nonce != p.Nonce || !bytes.Equal(q.Sig, p.Sig) {
			t.Fatalf("round trip changed %+v to %+v", p, q)
		}
	})
}

// FuzzParseAuthorization checks the Authorization header parser: no panic,
// only the two sentinels, and success only for the SSH-Cert scheme.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("SSH-Cert AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t")
	f.Add("Bearer abc.def.ghi")
	f.Add("ssh-cert    ")
	f.Fuzz(func(t *testing.T, in string) {
		b, err := parseAuthorization(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoCredentials) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrNoCredentials", err)
			}
			return
		}
		if len(b) == 0 || len(in) > MaxAuthorizationBytes {
			t.Fatalf("accepted %q", in)
		}
	})
}
