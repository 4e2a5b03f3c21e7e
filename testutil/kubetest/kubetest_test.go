package kubetest

import (
	"os"
	"strings"
	"testing"
)

// TestBinary builds (or finds in the cache) the kube-apiserver and the
// fakekubelet; `make test` runs it first so the end-to-end packages do not
// build them concurrently.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kube-apiserver")
	}
	for _, bin := range []string{Binary(t), KubeletBinary(t)} {
		if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("%s: %v", bin, err)
		}
	}
}

// TestKubeletExec: a real kubectl exec, directly against the API server,
// reaches the fakekubelet through the API server's kubelet client, over
// WebSocket (kubectl's default) and SPDY.
func TestKubeletExec(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver")
	}
	if _, err := os.Stat(KubectlPath()); err != nil {
		t.Skip("kubectl not installed")
	}
	c := Start(t)
	c.StartKubelet(t)
	c.RunPod(t, "default", "box")
	for _, ws := range []string{"true", "false"} {
		t.Run("websockets="+ws, func(t *testing.T) {
			t.Setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", ws)
			if out := c.Kubectl(t, "", "exec", "box", "--", "echo", "hello"); strings.TrimSpace(out) != "hello" {
				t.Fatalf("exec echo: %q", out)
			}
			if out := c.Kubectl(t, "one\ntwo\n", "exec", "-i", "box", "--", "cat"); out != "one\ntwo\n" {
				t.Fatalf("exec -i cat: %q", out)
			}
			out, err := c.KubectlErr("", "exec", "box", "--", "sh", "-c", "exit 3")
			if err == nil || !strings.Contains(out, "exit code 3") {
				t.Fatalf("exit 3: %v %q", err, out)
			}
		})
	}
}
