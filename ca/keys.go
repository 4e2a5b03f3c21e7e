package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// KVStore keeps generated keys so that every replica shares them.
type KVStore interface {
	GetKV(ctx context.Context, key string) ([]byte, error)
	PutKVIfAbsent(ctx context.Context, key string, v []byte) ([]byte, error)
}

// LoadOrCreateKey returns the signer in file. When the file is absent it
// takes the key kept in store under kvKey, or, when there is none either,
// generates an ed25519 key, stores it (first writer wins across replicas)
// and writes the file 0600. An existing file is never overwritten.
func LoadOrCreateKey(ctx context.Context, file string, store KVStore, kvKey string) (ssh.Signer, error) {
	b, err := loadOrCreatePEM(ctx, file, store, kvKey)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", file, err)
	}
	return s, nil
}

// LoadOrCreateEd25519 is LoadOrCreateKey for callers that need the raw
// ed25519 key (signing recordings).
func LoadOrCreateEd25519(ctx context.Context, file string, store KVStore, kvKey string) (ed25519.PrivateKey, error) {
	b, err := loadOrCreatePEM(ctx, file, store, kvKey)
	if err != nil {
		return nil, err
	}
	raw, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", file, err)
	}
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		return *k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("ca: %s: want an ed25519 key, have %T", file, raw)
	}
}

func loadOrCreatePEM(ctx context.Context, file string, store KVStore, kvKey string) ([]byte, error) {
	if b, err := os.ReadFile(file); err == nil {
		if _, err := ssh.ParseRawPrivateKey(b); err != nil {
			return nil, fmt.Errorf("ca: %s: %w", file, err)
		}
		if store != nil {
			if _, err := store.PutKVIfAbsent(ctx, kvKey, b); err != nil {
				return nil, fmt.Errorf("ca: store %s: %w", kvKey, err)
			}
		}
		return b, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: %w", err)
	}
	var pemBytes []byte
	if store != nil {
		if b, err := store.GetKV(ctx, kvKey); err == nil {
			pemBytes = b
		}
	}
	if pemBytes == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("ca: generate: %w", err)
		}
		blk, err := ssh.MarshalPrivateKey(priv, "jumpgate "+kvKey)
		if err != nil {
			return nil, fmt.Errorf("ca: marshal: %w", err)
		}
		pemBytes = pem.EncodeToMemory(blk)
		if store != nil {
			if pemBytes, err = store.PutKVIfAbsent(ctx, kvKey, pemBytes); err != nil {
				return nil, fmt.Errorf("ca: store %s: %w", kvKey, err)
			}
		}
	}
	if _, err := ssh.ParseRawPrivateKey(pemBytes); err != nil {
		return nil, fmt.Errorf("ca: stored key %s: %w", kvKey, err)
	}
	if err := writeNew(file, pemBytes); err != nil {
		return nil, err
	}
	return pemBytes, nil
}

// writeNew writes a file that must not exist yet, mode 0600.
func writeNew(file string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("ca: write %s: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("ca: sync %s: %w", file, err)
	}
	return f.Close()
}

// ErrKeyRejected is wrapped when a public key may not be certified.
var ErrKeyRejected = errors.New("ca: public key rejected")

// CheckPublicKey accepts ed25519, ECDSA (P-256/384/521), RSA of at least
// 2048 bits and the FIDO2 security-key types; it refuses everything else,
// certificates included.
func CheckPublicKey(k ssh.PublicKey) error {
	switch k.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		return nil
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return fmt.Errorf("%w: unreadable ECDSA key", ErrKeyRejected)
		}
		if e, ok := ck.CryptoPublicKey().(*ecdsa.PublicKey); !ok || (e.Curve != elliptic.P256() && e.Curve != elliptic.P384() && e.Curve != elliptic.P521()) {
			return fmt.Errorf("%w: unsupported ECDSA curve", ErrKeyRejected)
		}
		return nil
	case ssh.KeyAlgoRSA:
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return fmt.Errorf("%w: unreadable RSA key", ErrKeyRejected)
		}
		r, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok || r.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA keys must have at least 2048 bits", ErrKeyRejected)
		}
		return nil
	default:
		return fmt.Errorf("%w: key type %s is not accepted (use ed25519, ECDSA, RSA >= 2048 or a FIDO2 security key)", ErrKeyRejected, k.Type())
	}
}
