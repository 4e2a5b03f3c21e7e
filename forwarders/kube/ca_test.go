package kube

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/jumpgate/jumpgate/storage/boltstore"
)

// TestCASharedThroughStore: replicas with their own data_dir and one store
// serve the same CA; a replica that already has CA files keeps them and
// never overwrites them.
func TestCASharedThroughStore(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := LoadOrCreateCA(ctx, dirA, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateCA(ctx, dirB, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.PEM(), b.PEM()) {
		t.Fatal("two replicas on one store have different CAs")
	}
	keyA, _ := os.ReadFile(filepath.Join(dirA, caKeyFile))
	keyB, _ := os.ReadFile(filepath.Join(dirB, caKeyFile))
	if len(keyA) == 0 || !bytes.Equal(keyA, keyB) {
		t.Fatal("the CA key was not written to the second replica's data_dir")
	}
	if fi, err := os.Stat(filepath.Join(dirB, caKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi, err)
	}
	// A replica with a CA of its own (made before the store was shared).
	dirC := t.TempDir()
	own, err := LoadOrCreateCA(ctx, dirC, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadOrCreateCA(ctx, dirC, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.PEM(), own.PEM()) || bytes.Equal(c.PEM(), a.PEM()) {
		t.Fatal("existing CA files were replaced")
	}
	// A serving certificate from one replica verifies against the other's CA.
	cert, err := a.ServingCert("prod-k8s")
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Leaf.CheckSignatureFrom(b.cert); err != nil {
		t.Fatalf("A's serving certificate against B's CA: %v", err)
	}
}

// TestCAFromFiles: replicas configured with the same ca.kube_cert_file and
// ca.kube_key_file (made here by the real openssl, PKCS #8 key) serve the
// same CA, and a serving certificate one of them issues verifies against
// the CA the other serves (what a kubeconfig from one trusts). Missing,
// mismatched or non-CA files are refused.
func TestCAFromFiles(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "kube-ca.crt"), filepath.Join(dir, "kube-ca.key")
	mk := func(crt, key string) {
		t.Helper()
		out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", key, "-out", crt, "-days", "3650", "-subj", "/CN=jumpgate-kube-ca",
			"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
	}
	mk(crt, key)
	a, err := LoadCAFiles(crt, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadCAFiles(crt, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.PEM(), b.PEM()) {
		t.Fatal("two loads of the same files serve different CAs")
	}
	leaf, err := a.ServingCert("prod-k8s")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.PEM())
	cert, err := x509.ParseCertificate(leaf.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: cert.DNSNames[0]}); err != nil {
		t.Fatalf("a's serving certificate against b's CA: %v", err)
	}

	other := filepath.Join(dir, "other")
	mk(other+".crt", other+".key")
	for _, tc := range []struct {
		name, crt, key string
		want           error
	}{
		{"missing key", crt, filepath.Join(dir, "nope"), os.ErrNotExist},
		{"mismatched key", crt, other + ".key", errKeyMismatch},
	} {
		if _, err := LoadCAFiles(tc.crt, tc.key, nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
