package recorder

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// SignatureDomain starts every signed message, so a recording signature can
// never be mistaken for a signature of anything else the key signs.
const SignatureDomain = "jumpgate-recording-v1"

// ErrBadSignature is returned by Verify when the signature does not match.
var ErrBadSignature = errors.New("recorder: bad recording signature")

// SignedMessage returns the exact bytes that Sign signs:
//
//	"jumpgate-recording-v1\n" + sha256hex + "\n" + sessionID
//
// with no trailing newline, where sha256hex is the 64 lower-case hex digits
// of the recording file's SHA-256 (Summary.SHA256, or `sha256sum FILE`) and
// sessionID is the session id as listed by `jumpgate sessions list`. The
// signature is pure Ed25519 (RFC 8032) over these bytes, base64 (standard,
// padded). An auditor can verify offline:
//
//	printf 'jumpgate-recording-v1\n%s\n%s' "$(sha256sum FILE | cut -d' ' -f1)" "$ID" > msg
//	echo "$SIG" | base64 -d > sig
//	openssl pkeyutl -verify -pubin -inkey audit-key.pem -rawin -in msg -sigfile sig
func SignedMessage(sha256hex, sessionID string) ([]byte, error) {
	if len(sha256hex) != 64 || strings.Trim(sha256hex, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("recorder: signed message: %q is not 64 lower-case hex digits", sha256hex)
	}
	if sessionID == "" || strings.ContainsFunc(sessionID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("recorder: signed message: session id %q is empty or has control characters", sessionID)
	}
	return []byte(SignatureDomain + "\n" + sha256hex + "\n" + sessionID), nil
}

// Sign signs SignedMessage(sha256hex, sessionID) and returns the base64
// signature.
func Sign(priv ed25519.PrivateKey, sha256hex, sessionID string) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("recorder: sign: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	msg, err := SignedMessage(sha256hex, sessionID)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg)), nil
}

// Verify checks a signature made by Sign. A well-formed signature that does
// not match returns ErrBadSignature.
func Verify(pub ed25519.PublicKey, sha256hex, sessionID, sig string) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("recorder: verify: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	msg, err := SignedMessage(sha256hex, sessionID)
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: not a base64 ed25519 signature", ErrBadSignature)
	}
	if !ed25519.Verify(pub, msg, raw) {
		return ErrBadSignature
	}
	return nil
}
