package krl

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // KRL_SECTION_FINGERPRINT_SHA1 is defined over SHA-1.
	"crypto/sha256"
	"errors"
	"time"

	"golang.org/x/crypto/ssh"
)

// Wire constants from OpenSSH's PROTOCOL.krl.
const (
	magic         = "SSHKRL\n\x00"
	formatVersion = 1

	sectionCertificates      = 1
	sectionExplicitKey       = 2
	sectionFingerprintSHA1   = 3
	sectionSignature         = 4
	sectionFingerprintSHA256 = 5
	sectionExtension         = 255

	certSectionSerialList   = 0x20
	certSectionSerialRange  = 0x21
	certSectionSerialBitmap = 0x22
	certSectionKeyID        = 0x23
	certSectionExtension    = 0x39
)

// MaxEntries bounds the revocation entries (serials, serial ranges, key IDs,
// keys and fingerprints, summed over the whole KRL) that Parse accepts, so a
// hostile KRL cannot make it allocate without bound: serial bitmaps expand to
// one entry per set bit.
const MaxEntries = 1 << 20

// maxBitmapBytes is OpenSSH's SSHBUF_MAX_BIGNUM: the largest mpint, in bytes,
// that sshd accepts for a serial bitmap (plus one leading zero byte).
const maxBitmapBytes = 16384 / 8

// Sentinel errors; every error returned by this package wraps one of them.
var (
	// ErrBadMagic: the input does not start with the KRL magic "SSHKRL\n\0".
	ErrBadMagic = errors.New("krl: not a KRL (bad magic)")
	// ErrMalformed: the input is truncated, has trailing data in a section or
	// holds a value OpenSSH rejects (serial 0, a reversed range, a bad key).
	ErrMalformed = errors.New("krl: malformed KRL")
	// ErrUnsupported: a well-formed KRL uses something this package does not
	// implement: another format version, an unknown section type, a
	// critical extension or a signature section.
	ErrUnsupported = errors.New("krl: unsupported KRL feature")
	// ErrTooLarge: the KRL holds more than MaxEntries revocation entries.
	ErrTooLarge = errors.New("krl: KRL exceeds parser limits")
	// ErrInvalid: Marshal was given contents that cannot be encoded or that
	// OpenSSH would reject (serial 0, a NUL byte in a string, a nil key).
	ErrInvalid = errors.New("krl: invalid KRL contents")
)

// KRL is an OpenSSH key revocation list. The zero value is an empty KRL that
// revokes nothing.
type KRL struct {
	// Version increases each time the KRL is modified (krl_version).
	Version uint64
	// GeneratedAt is when the KRL was generated, at one-second precision;
	// the zero time is encoded as 0.
	GeneratedAt time.Time
	// Comment is free text; it must not contain a NUL byte.
	Comment string
	// Certificates revoke certificates by serial number or key ID, each
	// section for one CA (or for any CA).
	Certificates []CertSection
	// Keys revokes plain keys explicitly (KRL_SECTION_EXPLICIT_KEY). A
	// revoked key also revokes every certificate for that key, and every
	// certificate signed by it when it is a CA key. A certificate given here
	// is encoded as its underlying key, as ssh-keygen does.
	Keys []ssh.PublicKey
	// SHA1Fingerprints and SHA256Fingerprints revoke plain keys by the hash
	// of their wire encoding (20 and 32 bytes). They revoke the same things as
	// Keys.
	SHA1Fingerprints   [][]byte
	SHA256Fingerprints [][]byte
}

// CertSection revokes certificates issued by one CA.
type CertSection struct {
	// CA is the issuing CA's public key; nil means any CA (most useful for
	// key IDs).
	CA ssh.PublicKey
	// Serials are revoked serial numbers. Marshal sorts and deduplicates
	// them; 0 is not allowed (sshd never revokes by serial 0, the serial of
	// certificates from CAs that do not number them, and rejects a KRL that
	// lists it).
	Serials []uint64
	// SerialRanges revoke every serial in Min..Max (both included).
	SerialRanges []SerialRange
	// KeyIDs are revoked certificate key IDs, matched exactly.
	KeyIDs []string
}

// SerialRange is an inclusive range of certificate serial numbers.
type SerialRange struct {
	Min, Max uint64
}

// IsRevoked reports whether sshd, given this KRL as RevokedKeys, would
// refuse cert: its key ID or (non-zero) serial is revoked for its CA or for
// any CA, or its key or its CA key is revoked explicitly or by fingerprint.
// It does not check the certificate's signature, validity or principals.
func (k *KRL) IsRevoked(cert *ssh.Certificate) bool {
	if k == nil || cert == nil {
		return false
	}
	if cert.Key != nil && k.IsKeyRevoked(cert.Key) {
		return true
	}
	if cert.SignatureKey == nil {
		return false
	}
	if k.IsKeyRevoked(cert.SignatureKey) {
		return true
	}
	ca := cert.SignatureKey.Marshal()
	for i := range k.Certificates {
		s := &k.Certificates[i]
		if s.CA != nil && !bytes.Equal(s.CA.Marshal(), ca) {
			continue
		}
		if s.revokes(cert) {
			return true
		}
	}
	return false
}

// IsKeyRevoked reports whether key is revoked explicitly or by its SHA-1 or
// SHA-256 fingerprint. A certificate is checked by its underlying key only;
// use IsRevoked for serials and key IDs.
func (k *KRL) IsKeyRevoked(key ssh.PublicKey) bool {
	if k == nil || key == nil {
		return false
	}
	blob := plainBlob(key)
	for _, r := range k.Keys {
		if r != nil && bytes.Equal(plainBlob(r), blob) {
			return true
		}
	}
	if len(k.SHA1Fingerprints) > 0 {
		sum := sha1.Sum(blob) //nolint:gosec // format-defined fingerprint, not a security boundary here.
		if containsBytes(k.SHA1Fingerprints, sum[:]) {
			return true
		}
	}
	if len(k.SHA256Fingerprints) > 0 {
		sum := sha256.Sum256(blob)
		if containsBytes(k.SHA256Fingerprints, sum[:]) {
			return true
		}
	}
	return false
}

func (s *CertSection) revokes(cert *ssh.Certificate) bool {
	for _, id := range s.KeyIDs {
		if id == cert.KeyId {
			return true
		}
	}
	if cert.Serial == 0 {
		return false
	}
	for _, n := range s.Serials {
		if n == cert.Serial {
			return true
		}
	}
	for _, r := range s.SerialRanges {
		if r.Min <= cert.Serial && cert.Serial <= r.Max {
			return true
		}
	}
	return false
}

// plainBlob is the wire encoding of key, of the underlying key for a
// certificate.
func plainBlob(key ssh.PublicKey) []byte {
	if c, ok := key.(*ssh.Certificate); ok && c.Key != nil {
		return c.Key.Marshal()
	}
	return key.Marshal()
}

func containsBytes(list [][]byte, v []byte) bool {
	for _, b := range list {
		if bytes.Equal(b, v) {
			return true
		}
	}
	return false
}
