package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/jumpgate/jumpgate/devidp"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/jumpgate once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "jumpgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "jumpgate")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/jumpgate")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Cleanup removes the built binary; call it from TestMain.
func Cleanup() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}

// IdP is the dev OpenID provider on a loopback TLS server.
type IdP struct {
	Issuer   string
	CAFile   string
	ClientID string
	HTTP     *http.Client
	srv      *httptest.Server
	provider *devidp.Provider
}

// StartIdP serves a dev IdP with the demo users.
func StartIdP(t testing.TB) *IdP {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	issuer := srv.URL + "/idp"
	p, err := devidp.New(devidp.Config{Issuer: issuer, Users: devidp.DemoUsers(),
		Clients: []devidp.Client{{ID: "jumpgate", RedirectURIs: []string{"http://127.0.0.1/callback", "https://127.0.0.1/auth/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/idp/", p.Handler())
	caFile := filepath.Join(t.TempDir(), "idp-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &IdP{Issuer: issuer, CAFile: caFile, ClientID: "jumpgate", HTTP: srv.Client(), srv: srv, provider: p}
}

// Token runs the real authorization code + PKCE flow for a demo user and
// returns the ID token.
func (i *IdP) Token(t testing.TB, user string) string {
	t.Helper()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, i.HTTP)
	oc := &oauth2.Config{ClientID: i.ClientID, RedirectURL: "http://127.0.0.1:1/callback", Scopes: []string{"openid", "email", "profile", "groups"},
		Endpoint: oauth2.Endpoint{AuthURL: i.Issuer + "/authorize", TokenURL: i.Issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	state := randString()
	authURL := oc.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", randString()))
	redirect, err := devidp.BrowserLogin(ctx, i.HTTP, authURL, user, devidp.DemoPassword(user))
	if err != nil {
		t.Fatalf("idp login %s: %v", user, err)
	}
	u, err := url.Parse(redirect)
	if err != nil || u.Query().Get("state") != state {
		t.Fatalf("idp redirect %q", redirect)
	}
	tok, err := oc.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("idp exchange: %v", err)
	}
	id, _ := tok.Extra("id_token").(string)
	if id == "" {
		t.Fatal("no id_token")
	}
	return id
}

func randString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Process is a started program, stopped by PID at cleanup.
type Process struct {
	Cmd    *exec.Cmd
	Out    *SyncBuffer
	done   chan struct{}
	exitMu sync.Mutex
	exit   error
}

// SyncBuffer is a goroutine-safe output buffer.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs name with args; stdout and stderr go to Out.
func Start(t testing.TB, env []string, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(name, args...), Out: &SyncBuffer{}, done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Out, p.Out
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		err := p.Cmd.Wait()
		p.exitMu.Lock()
		p.exit = err
		p.exitMu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop(10 * time.Second) })
	return p
}

// Stop sends SIGTERM, then SIGKILL after grace, and waits.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.Err()
	default:
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.Err()
}

// Kill sends SIGKILL (a crash) and waits.
func (p *Process) Kill() {
	_ = syscall.Kill(p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the exit error once done.
func (p *Process) Err() error {
	p.exitMu.Lock()
	defer p.exitMu.Unlock()
	return p.exit
}

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a loopback address with a free port.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TLSClient trusts caFile.
func TLSClient(t testing.TB, caFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	b, err := os.ReadFile(caFile)
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("ca file %s: %v", caFile, err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// SHA256File returns the hex SHA-256 of a file.
func SHA256File(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// Run runs a command to completion and returns combined output and error.
func Run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Quote is for test messages.
func Quote(args []string) string { return strings.Join(args, " ") }

// Stop takes the IdP down (connections refused from now on).
func (i *IdP) Stop() { i.srv.Close() }
