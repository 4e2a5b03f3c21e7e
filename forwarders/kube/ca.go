package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/atomicfile"
)

// CA issues the forwarder's TLS serving certificates. Its certificate is
// what generated kubeconfigs trust.
type CA struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	pem   []byte
	clock func() time.Time

	mu     sync.Mutex
	issued map[string]*tls.Certificate
}

// CA file names inside the data directory.
const (
	caCertFile = "kube-ca.crt"
	caKeyFile  = "kube-ca.key"
)

// servingTTL is the lifetime of a serving certificate; it is re-issued
// when less than a quarter remains.
const servingTTL = 7 * 24 * time.Hour

// KVStore keeps the CA so that every replica serves certificates from the
// same one (a kubeconfig written against one replica works through all).
type KVStore interface {
	GetKV(ctx context.Context, key string) ([]byte, error)
	PutKVIfAbsent(ctx context.Context, key string, v []byte) ([]byte, error)
}

// kvKey is where the CA (certificate and key PEM) is kept in the store.
const kvKey = "kube/ca"

// LoadOrCreateCA loads the CA from dir (kube-ca.crt, kube-ca.key). When the
// files are absent it takes the CA kept in store, or, when there is none
// either, creates an ECDSA P-256 CA valid for ten years, keeps it in store
// (the first replica's wins) and writes the files. Existing files are never
// overwritten, and are offered to the store. store and clock may be nil.
func LoadOrCreateCA(ctx context.Context, dir string, store KVStore, clock func() time.Time) (*CA, error) {
	if clock == nil {
		clock = time.Now
	}
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, err := os.ReadFile(certPath)
	switch {
	case err == nil:
		keyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, fmt.Errorf("kube: read CA key: %w", err)
		}
		c, err := parseCA(certPEM, keyPEM, clock)
		if err != nil {
			return nil, fmt.Errorf("kube: CA files in %s: %w", dir, err)
		}
		if store != nil {
			if _, err := store.PutKVIfAbsent(ctx, kvKey, append(append([]byte(nil), certPEM...), keyPEM...)); err != nil {
				return nil, fmt.Errorf("kube: store CA: %w", err)
			}
		}
		return c, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("kube: read CA: %w", err)
	}
	var bundle []byte
	if store != nil {
		if b, err := store.GetKV(ctx, kvKey); err == nil {
			bundle = b
		}
	}
	if bundle == nil {
		certPEM, keyPEM, err := createCA(clock())
		if err != nil {
			return nil, err
		}
		bundle = append(certPEM, keyPEM...)
		if store != nil {
			if bundle, err = store.PutKVIfAbsent(ctx, kvKey, bundle); err != nil {
				return nil, fmt.Errorf("kube: store CA: %w", err)
			}
		}
	}
	certPEM, keyPEM := splitBundle(bundle)
	c, err := parseCA(certPEM, keyPEM, clock)
	if err != nil {
		return nil, fmt.Errorf("kube: stored CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("kube: write CA key: %w", err)
	}
	if err := atomicfile.Write(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("kube: write CA: %w", err)
	}
	return c, nil
}

// LoadCAFiles loads the CA from the operator's files (config
// ca.kube_cert_file, ca.kube_key_file), the same on every replica. Unlike
// LoadOrCreateCA it never creates or writes anything: missing or
// mismatched files are an error.
func LoadCAFiles(certFile, keyFile string, clock func() time.Time) (*CA, error) {
	if clock == nil {
		clock = time.Now
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("kube: read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("kube: read CA key: %w", err)
	}
	c, err := parseCA(certPEM, keyPEM, clock)
	if err != nil {
		return nil, fmt.Errorf("kube: CA files %s, %s: %w", certFile, keyFile, err)
	}
	if !c.cert.IsCA {
		return nil, fmt.Errorf("kube: %s: %w", certFile, errNotCA)
	}
	if !c.key.PublicKey.Equal(c.cert.PublicKey) {
		return nil, fmt.Errorf("kube: %s: %w", keyFile, errKeyMismatch)
	}
	return c, nil
}

var (
	errNotCA       = errors.New("the certificate is not a CA (basicConstraints CA:TRUE)")
	errKeyMismatch = errors.New("the key does not belong to the certificate")
)

// splitBundle separates the certificate block from the key block.
func splitBundle(b []byte) (certPEM, keyPEM []byte) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, nil
	}
	return pem.EncodeToMemory(blk), rest
}

func parseCA(certPEM, keyPEM []byte, clock func() time.Time) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		k8, err8 := x509.ParsePKCS8PrivateKey(kb.Bytes)
		ek, ok := k8.(*ecdsa.PrivateKey)
		if err8 != nil || !ok {
			return nil, fmt.Errorf("parse CA key (EC, SEC 1 or PKCS #8): %w", err)
		}
		key = ek
	}
	return &CA{cert: cert, key: key, pem: certPEM, clock: clock, issued: map[string]*tls.Certificate{}}, nil
}

// createCA makes a new CA and returns its certificate and key in PEM.
func createCA(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("kube: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "jumpgate kubernetes forwarder CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("kube: CA certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("kube: CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// PEM returns the CA certificate in PEM, for kubeconfig's
// certificate-authority-data.
func (c *CA) PEM() []byte { return append([]byte(nil), c.pem...) }

// ServingCert returns a serving certificate for target with SANs
// 127.0.0.1, ::1, localhost and the target's name.
func (c *CA) ServingCert(target string) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	if tc, ok := c.issued[target]; ok && now.Before(tc.Leaf.NotAfter.Add(-servingTTL/4)) {
		return tc, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kube: serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: target},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(servingTTL),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(target); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if target != "" && target != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, target)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("kube: serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("kube: serving certificate: %w", err)
	}
	tc := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	c.issued[target] = tc
	return tc, nil
}
