// Package kubetest starts a real kube-apiserver (k8s.io/kubernetes v1.34.4
// with etcd in the same process, built from the separate Go module in
// test/kubeapi) on loopback for tests. The binary is built once and cached
// under the user cache directory, keyed by the module's go.mod, go.sum and
// sources. It is for tests only, not for running clusters.
package kubetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Version is the Kubernetes version the test server runs.
const Version = "v1.34.4"

// Cluster is a running kube-apiserver.
type Cluster struct {
	// URL is the https URL of the API server.
	URL string
	// CAFile is its serving CA; CAPEM the same PEM.
	CAFile string
	CAPEM  []byte
	// Token is an admin bearer token (group system:masters, which may
	// impersonate).
	Token string
}

var buildMu sync.Mutex

// moduleDir returns test/kubeapi of this repository.
func moduleDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("kubetest: cannot locate source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "test", "kubeapi"), nil
}

// cacheKey hashes the module's go.mod, go.sum and Go sources.
func cacheKey(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(dir, f)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Binary returns the path of the built kube-apiserver, building it into
// the cache ($JUMPGATE_KUBEAPI_CACHE, else the user cache dir/jumpgate) if
// it is not there. The first build takes minutes.
func Binary(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	dir, err := moduleDir()
	if err != nil {
		t.Fatal(err)
	}
	key, err := cacheKey(dir)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	cache := os.Getenv("JUMPGATE_KUBEAPI_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("kubetest: %v", err)
		}
		cache = filepath.Join(base, "jumpgate")
	}
	bin := filepath.Join(cache, "kube-apiserver-"+key)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	// A unique temporary name: another test process may be building too.
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	ld := "-s -w -X k8s.io/component-base/version.gitVersion=" + Version +
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
	cmd := exec.Command("go", "build", "-o", tmp, "-ldflags", ld, "./cmd/kube-apiserver")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Logf("kubetest: building kube-apiserver %s (minutes on a cold cache)", Version)
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubetest: build: %v\n%s", err, out.String())
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return bin
}

// Start runs a kube-apiserver for the test and stops it (by PID) in
// t.Cleanup.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready.json")
	logs := &syncWriter{w: &bytes.Buffer{}}
	cmd := exec.Command(bin, "-dir", dir, "-ready", ready)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubetest: start: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			var info struct{ URL, CAFile, Token string }
			if err := json.Unmarshal(b, &info); err != nil {
				t.Fatalf("kubetest: ready file: %v", err)
			}
			ca, err := os.ReadFile(info.CAFile)
			if err != nil {
				t.Fatalf("kubetest: %v", err)
			}
			return &Cluster{URL: info.URL, CAFile: info.CAFile, CAPEM: ca, Token: info.Token}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("kubetest: kube-apiserver exited: %v\n%s", err, tail(logs.String()))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubetest: kube-apiserver not ready\n%s", tail(logs.String()))
		}
	}
}

// Kubectl runs /usr/bin/kubectl (or kubectl on PATH) as the admin and
// returns its combined output; it fails the test on error.
func (c *Cluster) Kubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := c.KubectlErr(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// KubectlErr is Kubectl returning the error.
func (c *Cluster) KubectlErr(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := []string{"--server", c.URL, "--certificate-authority", c.CAFile, "--token", c.Token, "--kubeconfig", os.DevNull}
	cmd := exec.CommandContext(ctx, KubectlPath(), append(base, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// KubectlPath returns the kubectl binary tests use.
func KubectlPath() string {
	if _, err := os.Stat("/usr/bin/kubectl"); err == nil {
		return "/usr/bin/kubectl"
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	return "kubectl"
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
