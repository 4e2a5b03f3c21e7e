package kube

import (
	"bytes"
	"context"
	"os"
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
