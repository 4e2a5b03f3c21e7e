package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// signingKey is the provider's only key: no rotation (development IdP).
type signingKey struct {
	id   string // RFC 7638 thumbprint, stable across restarts
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

var (
	_ op.SigningKey = (*signingKey)(nil)
	_ op.Key        = publicKey{}
)

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.priv }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the JWKS entry of a signingKey.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return p.k.priv.Public() }

const rsaKeyBits = 2048

// loadOrCreateSigningKey reads the key at path, or creates it there (0600,
// never overwriting an existing file), or — with an empty path — generates
// an in-memory key.
func loadOrCreateSigningKey(path string, rand io.Reader) (*signingKey, error) {
	if path == "" {
		priv, err := rsa.GenerateKey(rand, rsaKeyBits)
		if err != nil {
			return nil, fmt.Errorf("devidp: generate signing key: %w", err)
		}
		return newSigningKey(priv)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createSigningKeyFile(path, rand)
	}
	if err != nil {
		return nil, fmt.Errorf("devidp: read signing key: %w", err)
	}
	if err := checkKeyFileMode(path); err != nil {
		return nil, err
	}
	return parseSigningKey(data)
}

func checkKeyFileMode(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("devidp: stat signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: signing key %s is accessible by others (mode %v); chmod 600 it", ErrInvalidConfig, path, st.Mode().Perm())
	}
	return nil
}

func createSigningKeyFile(path string, rand io.Reader) (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand, rsaKeyBits)
	if err != nil {
		return nil, fmt.Errorf("devidp: generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("devidp: encode signing key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp, err := os.CreateTemp(filepath.Dir(path), ".devidp-key-*")
	if err != nil {
		return nil, fmt.Errorf("devidp: create signing key: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("devidp: create signing key: %w", err)
	}
	if _, err := tmp.Write(pemBytes); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("devidp: write signing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("devidp: write signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("devidp: write signing key: %w", err)
	}
	// Link fails when path exists: a key another process wrote first wins.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateSigningKey(path, rand)
		}
		return nil, fmt.Errorf("devidp: install signing key: %w", err)
	}
	return newSigningKey(priv)
}

// parseSigningKey decodes a PEM private key: PKCS#8, PKCS#1 (RSA) or SEC 1
// (EC). RSA keys must have at least 2048 bits; EC keys must be P-256.
func parseSigningKey(data []byte) (*signingKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: signing key file holds no PEM block", ErrInvalidConfig)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: signing key PEM type %q is not a private key", ErrInvalidConfig, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: signing key: %w", ErrInvalidConfig, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: signing key type %T is not supported", ErrInvalidConfig, key)
	}
	return newSigningKey(signer)
}

func newSigningKey(priv crypto.Signer) (*signingKey, error) {
	var alg jose.SignatureAlgorithm
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < rsaKeyBits {
			return nil, fmt.Errorf("%w: RSA signing key has %d bits, want at least %d", ErrInvalidConfig, k.N.BitLen(), rsaKeyBits)
		}
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: EC signing key must be P-256", ErrInvalidConfig)
		}
		alg = jose.ES256
	default:
		return nil, fmt.Errorf("%w: signing key type %T is not supported (RSA or ECDSA P-256)", ErrInvalidConfig, priv)
	}
	jwk := jose.JSONWebKey{Key: priv.Public()}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devidp: key thumbprint: %w", err)
	}
	return &signingKey{id: base64.RawURLEncoding.EncodeToString(thumb), alg: alg, priv: priv}, nil
}
