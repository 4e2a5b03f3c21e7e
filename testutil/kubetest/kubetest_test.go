package kubetest

import (
	"os"
	"testing"
)

// TestBinary builds (or finds in the cache) the kube-apiserver; `make test`
// runs it first so the end-to-end packages do not build it concurrently.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kube-apiserver")
	}
	bin := Binary(t)
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("kube-apiserver %s: %v", bin, err)
	}
}
