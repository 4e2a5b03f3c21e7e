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

	dir string // the API server's state directory
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

// cacheKey hashes the module's go.mod and go.sum and the Go sources of
// the one command, so that changing one test binary does not rebuild the
// other.
func cacheKey(dir, command string) (string, error) {
	files := []string{filepath.Join(dir, "go.mod"), filepath.Join(dir, "go.sum")}
	err := filepath.WalkDir(filepath.Join(dir, "cmd", command), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
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
	return binary(t, "kube-apiserver")
}

// KubeletBinary returns the path of the built fakekubelet (the kubelet's
// CRI streaming server with a local-process runtime), cached like Binary.
func KubeletBinary(t testing.TB) string {
	t.Helper()
	return binary(t, "fakekubelet")
}

func binary(t testing.TB, command string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	dir, err := moduleDir()
	if err != nil {
		t.Fatal(err)
	}
	key, err := cacheKey(dir, command)
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
	bin := filepath.Join(cache, command+"-"+key)
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
	cmd := exec.Command("go", "build", "-o", tmp, "-ldflags", ld, "./cmd/"+command)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Logf("kubetest: building %s %s (minutes on a cold cache)", command, Version)
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubetest: build %s: %v\n%s", command, err, out.String())
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
	var info struct{ URL, CAFile, Token string }
	startProcess(t, "kube-apiserver", bin, dir, &info)
	ca, err := os.ReadFile(info.CAFile)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return &Cluster{URL: info.URL, CAFile: info.CAFile, CAPEM: ca, Token: info.Token, dir: dir}
}

// startProcess runs bin -dir dir -ready FILE, stops it (by PID, SIGINT
// then SIGKILL) in t.Cleanup, waits for FILE and decodes it into info.
func startProcess(t testing.TB, name, bin, dir string, info any) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), name+"-ready.json")
	logs := &syncWriter{w: &bytes.Buffer{}}
	cmd := exec.Command(bin, "-dir", dir, "-ready", ready)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubetest: start %s: %v", name, err)
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
			if err := json.Unmarshal(b, info); err != nil {
				t.Fatalf("kubetest: %s ready file: %v", name, err)
			}
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("kubetest: %s exited: %v\n%s", name, err, tail(logs.String()))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubetest: %s not ready\n%s", name, tail(logs.String()))
		}
	}
}

// NodeName is the Node that StartKubelet registers.
const NodeName = "node-1"

// StartKubelet runs a fakekubelet for the cluster (stopped by PID in
// t.Cleanup) and registers it as the Ready Node NodeName, so that the API
// server sends exec, attach and port-forward of pods bound to that node
// to it. The commands of an exec run as local processes.
func (c *Cluster) StartKubelet(t testing.TB) {
	t.Helper()
	bin := KubeletBinary(t)
	var info struct{ Port int }
	startProcess(t, "fakekubelet", bin, c.dir, &info)
	node := fmt.Sprintf(`{"apiVersion":"v1","kind":"Node","metadata":{"name":%q,"labels":{"kubernetes.io/hostname":%q}}}`, NodeName, NodeName)
	c.Kubectl(t, node, "create", "-f", "-")
	status := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}],`+
		`"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}},`+
		`"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"fakekubelet"}]}}`, info.Port)
	c.Kubectl(t, "", "patch", "node", NodeName, "--subresource=status", "--type=merge", "-p", status)
}

// RunPod creates the Pod ns/name with one container "main" bound to
// NodeName and marks it Running (no scheduler or kubelet status loop runs
// here). It creates the namespace's default ServiceAccount if missing.
func (c *Cluster) RunPod(t testing.TB, ns, name string) {
	t.Helper()
	if _, err := c.KubectlErr("", "-n", ns, "get", "serviceaccount", "default"); err != nil {
		c.Kubectl(t, "", "-n", ns, "create", "serviceaccount", "default")
	}
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":%q},`+
		`"spec":{"nodeName":%q,"automountServiceAccountToken":false,"containers":[{"name":"main","image":"busybox"}]}}`, name, ns, NodeName)
	c.Kubectl(t, pod, "create", "-f", "-")
	now := time.Now().UTC().Format(time.RFC3339)
	status := fmt.Sprintf(`{"status":{"phase":"Running","podIP":"127.0.0.1","conditions":[{"type":"Ready","status":"True"}],`+
		`"containerStatuses":[{"name":"main","image":"busybox","imageID":"","ready":true,"restartCount":0,"started":true,`+
		`"containerID":"fake://%s/%s/main","state":{"running":{"startedAt":%q}}}]}}`, ns, name, now)
	c.Kubectl(t, "", "-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge", "-p", status)
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
