package login

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

type env struct {
	idp    *fakeIdP
	server *fakeServer
	caFile string
	dir    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	idp := newFakeIdP(t)
	return &env{idp: idp, server: newFakeServer(t, idp), caFile: caFile(t, idp.srv), dir: filepath.Join(t.TempDir(), "ssh", "jumpgate")}
}

func (e *env) options(out io.Writer) Options {
	return Options{
		Server:      e.server.srv.URL,
		SSHDir:      e.dir,
		CAFile:      e.caFile,
		TTL:         10 * time.Minute,
		OpenBrowser: followBrowser(e.idp),
		NoAgent:     true,
		Out:         out,
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// browserClient is what a browser does: trusts the IdP, follows redirects
// (or not, when the test wants to tamper with the callback).
func browserClient(idp *fakeIdP, follow bool) *http.Client {
	c := *idp.srv.Client()
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &c
}

// followBrowser completes the login like a user who just clicks through.
func followBrowser(idp *fakeIdP) func(ctx context.Context, u string) error {
	return func(ctx context.Context, u string) error {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return err
		}
		resp, err := browserClient(idp, true).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte("logged in")) {
			return fmt.Errorf("callback page: %d %s", resp.StatusCode, body)
		}
		return nil
	}
}

// tamperBrowser lets the IdP redirect, changes the callback query, then
// delivers it to the loopback listener.
func tamperBrowser(idp *fakeIdP, tamper func(q url.Values)) func(ctx context.Context, u string) error {
	return func(ctx context.Context, u string) error {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return err
		}
		resp, err := browserClient(idp, false).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound {
			return fmt.Errorf("authorize answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		q := loc.Query()
		tamper(q)
		loc.RawQuery = q.Encode()
		cb, err := http.NewRequestWithContext(ctx, "GET", loc.String(), nil)
		if err != nil {
			return err
		}
		resp, err = http.DefaultClient.Do(cb)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestLoginBrowser(t *testing.T) {
	e := newEnv(t)
	var out bytes.Buffer
	res, err := Login(testCtx(t), e.options(&out))
	if err != nil {
		t.Fatalf("Login: %v\n%s", err, out.String())
	}

	// The IdP saw a PKCE S256 request with the server's scopes.
	q := e.idp.authRequests[0]
	if q.Get("code_challenge_method") != "S256" || q.Get("scope") != "openid email profile groups" {
		t.Errorf("authorization request = %v", q)
	}
	if e.server.lastTTL != "10m" {
		t.Errorf("requested ttl = %q, want 10m", e.server.lastTTL)
	}
	if !strings.Contains(out.String(), e.idp.issuer()+"/authorize?") {
		t.Errorf("output does not show the authorization URL:\n%s", out.String())
	}

	// Files, modes and contents.
	if m := mode(t, e.dir); m != 0o700 {
		t.Errorf("dir mode %o, want 700", m)
	}
	for name, want := range map[string]os.FileMode{KeyFile: 0o600, PubKeyFile: 0o644, CertFile: 0o644, KnownHostsFile: 0o644, ConfigFile: 0o600} {
		if m := mode(t, filepath.Join(e.dir, name)); m != want {
			t.Errorf("%s mode %o, want %o", name, m, want)
		}
	}
	keyPEM, _ := os.ReadFile(filepath.Join(e.dir, KeyFile))
	key, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatalf("private key: %v", err)
	}
	if !bytes.Equal(key.PublicKey().Marshal(), res.Certificate.Key.Marshal()) {
		t.Error("certificate is not for the written key")
	}
	kh, _ := os.ReadFile(filepath.Join(e.dir, KnownHostsFile))
	wantKH := "@cert-authority * " + string(ssh.MarshalAuthorizedKey(e.server.hostCA.PublicKey()))
	if string(kh) != wantKH {
		t.Errorf("known_hosts = %q, want %q", kh, wantKH)
	}

	// The real OpenSSH tools read what we wrote.
	lout, err := exec.Command("ssh-keygen", "-L", "-f", filepath.Join(e.dir, CertFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, lout)
	}
	for _, want := range []string{"ssh-ed25519-cert-v01@openssh.com user certificate", `Key ID: "alice/1"`, "ubuntu", "deploy", "permit-pty"} {
		if !strings.Contains(string(lout), want) {
			t.Errorf("ssh-keygen -L output lacks %q:\n%s", want, lout)
		}
	}
	yout, err := exec.Command("ssh-keygen", "-y", "-f", filepath.Join(e.dir, KeyFile)).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -y: %v", err)
	}
	pub, _ := os.ReadFile(filepath.Join(e.dir, PubKeyFile))
	if f := strings.Fields(string(yout)); len(f) < 2 || !strings.HasPrefix(string(pub), f[0]+" "+f[1]) {
		t.Errorf("ssh-keygen -y = %q, %s = %q", yout, PubKeyFile, pub)
	}

	// Saved settings and the snippet.
	_, _, saved, err := LoadIdentity(e.dir)
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	if saved.Server != e.server.srv.URL || saved.CAFile != e.caFile || saved.SSHAddress != "127.0.0.1:2222" {
		t.Errorf("saved = %+v", saved)
	}
	for _, want := range []string{
		"Host jumpgate\n", "HostName 127.0.0.1", "Port 2222", "User alice",
		"IdentityFile " + filepath.Join(e.dir, KeyFile), "CertificateFile " + filepath.Join(e.dir, CertFile),
		"UserKnownHostsFile " + filepath.Join(e.dir, KnownHostsFile), "IdentitiesOnly yes", "ProxyJump jumpgate",
	} {
		if !strings.Contains(res.Snippet, want) || !strings.Contains(out.String(), want) {
			t.Errorf("snippet lacks %q:\n%s", want, res.Snippet)
		}
	}
	// OpenSSH accepts the snippet (the target block is a comment).
	cfgPath := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfgPath, []byte(res.Snippet), 0o600); err != nil {
		t.Fatal(err)
	}
	gout, err := exec.Command("ssh", "-G", "-F", cfgPath, "jumpgate").CombinedOutput()
	if err != nil {
		t.Fatalf("ssh -G: %v\n%s", err, gout)
	}
	if !strings.Contains(string(gout), "port 2222") || !strings.Contains(string(gout), "certificatefile "+filepath.Join(e.dir, CertFile)) {
		t.Errorf("ssh -G:\n%s", gout)
	}

	// Status now and after expiry.
	now := time.Now()
	si, err := Status(e.dir, now)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if si.Username != "alice" || si.KeyID != "alice/1" || si.Serial != 1 || si.Expired ||
		si.Server != e.server.srv.URL || strings.Join(si.Principals, ",") != "ubuntu,deploy" ||
		si.TimeLeft <= 0 || si.TimeLeft > 10*time.Minute {
		t.Errorf("Status = %+v", si)
	}
	si, err = Status(e.dir, now.Add(time.Hour))
	if err != nil || !si.Expired || si.TimeLeft != 0 {
		t.Errorf("Status later = %+v, %v", si, err)
	}
	var sb strings.Builder
	if err := WriteStatus(&sb, si); err != nil || !strings.Contains(sb.String(), "EXPIRED") {
		t.Errorf("WriteStatus = %q, %v", sb.String(), err)
	}
}

func TestAPIClient(t *testing.T) {
	e := newEnv(t)
	if _, err := Login(testCtx(t), e.options(io.Discard)); err != nil {
		t.Fatalf("Login: %v", err)
	}
	c, err := NewAPIClient(e.dir, "", "")
	if err != nil {
		t.Fatalf("NewAPIClient: %v", err)
	}
	ctx := testCtx(t)
	var who struct {
		KeyID  string `json:"key_id"`
		Method string `json:"method"`
		Body   string `json:"body"`
	}
	if err := c.Do(ctx, "GET", "/v1/whoami?x=a%2Fb", nil, &who); err != nil {
		t.Fatalf("GET: %v", err)
	}
	if who.KeyID != "alice/1" || who.Method != "GET" {
		t.Errorf("whoami = %+v", who)
	}
	if err := c.Do(ctx, "POST", "/v1/whoami", map[string]string{"reason": "deploy"}, &who); err != nil {
		t.Fatalf("POST: %v", err)
	}
	if who.Body != `{"reason":"deploy"}` {
		t.Errorf("server saw body %q", who.Body)
	}
	var raw []byte
	if err := c.Do(ctx, "GET", "/v1/whoami", nil, &raw); err != nil || !bytes.Contains(raw, []byte("alice/1")) {
		t.Errorf("raw = %q, %v", raw, err)
	}

	err = c.Do(ctx, "GET", "/v1/forbidden", nil, nil)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 403 || apiErr.Message != "alice is not an auditor" {
		t.Fatalf("forbidden: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}

	// Another key's signature is refused by the server (401, surfaced).
	c2 := *c
	c2.Signer = wrongSigner{c.Signer, newTestSigner(t)}
	if err := c2.Do(ctx, "GET", "/v1/whoami", nil, nil); !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Errorf("wrong key: %v", err)
	}

	later := *c
	later.Now = func() time.Time { return time.Now().Add(time.Hour) }
	if err := later.Do(ctx, "GET", "/v1/whoami", nil, nil); !errors.Is(err, ErrCertExpired) {
		t.Errorf("expired: %v", err)
	}
}

type wrongSigner struct {
	cert  ssh.Signer
	other ssh.Signer
}

func (w wrongSigner) PublicKey() ssh.PublicKey { return w.cert.PublicKey() }
func (w wrongSigner) Sign(r io.Reader, d []byte) (*ssh.Signature, error) {
	return w.other.Sign(r, d)
}

func TestLoginBrowserRefusals(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(q url.Values)
		nonce   bool
		wantErr error
	}{
		{"state mismatch", func(q url.Values) { q.Set("state", "forged") }, false, ErrStateMismatch},
		{"state missing", func(q url.Values) { q.Del("state") }, false, ErrStateMismatch},
		{"missing code", func(q url.Values) { q.Del("code") }, false, ErrMissingCode},
		{"provider error", func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") }, false, ErrProviderRefused},
		{"wrong nonce", nil, true, ErrNonceMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.idp.wrongNonce = tt.nonce
			o := e.options(io.Discard)
			if tt.tamper != nil {
				o.OpenBrowser = tamperBrowser(e.idp, tt.tamper)
			}
			_, err := Login(testCtx(t), o)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Login = %v, want %v", err, tt.wantErr)
			}
			if _, err := os.Stat(e.dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused login created %s", e.dir)
			}
		})
	}
}

func TestLoginBrowserTimeout(t *testing.T) {
	e := newEnv(t)
	o := e.options(io.Discard)
	o.OpenBrowser = func(context.Context, string) error { return errors.New("no display") }
	o.BrowserTimeout = time.Millisecond
	var out bytes.Buffer
	o.Out = &out
	if _, err := Login(testCtx(t), o); !errors.Is(err, ErrLoginTimeout) {
		t.Fatalf("Login = %v, want ErrLoginTimeout", err)
	}
	if !strings.Contains(out.String(), "Could not open a browser") {
		t.Errorf("output: %s", out.String())
	}
}

func TestLoginDevice(t *testing.T) {
	e := newEnv(t)
	e.idp.pendingLeft = 1
	o := e.options(nil)
	var out bytes.Buffer
	o.Out = &out
	o.Device = true
	o.OpenBrowser = func(context.Context, string) error { t.Error("device flow opened a browser"); return nil }
	res, err := Login(testCtx(t), o)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if e.idp.devicePolls != 2 {
		t.Errorf("token endpoint polled %d times, want 2 (pending, then success)", e.idp.devicePolls)
	}
	if !strings.Contains(out.String(), e.idp.issuer()+"/activate?user_code=WDJB-MJHT") || !strings.Contains(out.String(), "WDJB-MJHT") {
		t.Errorf("output lacks verification URI or code:\n%s", out.String())
	}
	if res.Certificate.KeyId != "alice/1" {
		t.Errorf("KeyId = %q", res.Certificate.KeyId)
	}

	e.server.mu.Lock()
	e.server.deviceFlow = false
	e.server.mu.Unlock()
	if _, err := Login(testCtx(t), o); !errors.Is(err, ErrNoDeviceFlow) {
		t.Errorf("device flow off: %v", err)
	}
}

func TestLoginIDTokenFile(t *testing.T) {
	e := newEnv(t)
	e.idp.mu.Lock()
	tok := e.idp.idToken("")
	e.idp.issued[tok] = true
	e.idp.mu.Unlock()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("\n  "+tok+" \n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := e.options(io.Discard)
	o.IDTokenFile = f
	o.OpenBrowser = func(context.Context, string) error { t.Error("token file login opened a browser"); return nil }
	if _, err := Login(testCtx(t), o); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if e.server.lastToken != tok {
		t.Errorf("server got token %q", e.server.lastToken)
	}
}

func TestTokenFromFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		wantErr       bool
	}{
		{"jwt", "a.b.c\n", false},
		{"empty", " \n\t", true},
		{"two tokens", "a.b.c\nd.e.f", true},
		{"not a jwt", "hello", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			os.WriteFile(p, []byte(tt.content), 0o600)
			tok, err := TokenFromFile(p)
			if (err != nil) != tt.wantErr {
				t.Fatalf("TokenFromFile = %q, %v", tok, err)
			}
		})
	}
	if _, err := TokenFromFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestLoginRefusesBadCertificate(t *testing.T) {
	tests := []struct {
		name    string
		mode    certMode
		wantErr error
	}{
		{"certificate for another key", certOtherKey, ErrCertNotOurs},
		{"host certificate", certHostCert, ErrNotUserCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			// A first good login, whose identity must survive the bad one.
			if _, err := Login(testCtx(t), e.options(io.Discard)); err != nil {
				t.Fatalf("first Login: %v", err)
			}
			before := snapshot(t, e.dir)
			e.server.setMode(tt.mode)
			if _, err := Login(testCtx(t), e.options(io.Discard)); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Login = %v, want %v", err, tt.wantErr)
			}
			if after := snapshot(t, e.dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("identity changed by a refused login:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// snapshot maps every file name in dir to its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		m[e.Name()] = string(b)
	}
	return m
}

func TestLoginServerError(t *testing.T) {
	e := newEnv(t)
	e.server.setMode(certForbidden)
	_, err := Login(testCtx(t), e.options(io.Discard))
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Fatalf("Login = %v, want *APIError 403", err)
	}
	want := "login: server refused the request (HTTP 403): user alice@example.com has no role"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if _, err := os.Stat(e.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed login created %s", e.dir)
	}
}

// startAgent runs a real ssh-agent in the foreground on a fresh socket and
// stops it by PID when the test ends.
func startAgent(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jg-agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitFor(t, 20*time.Second, "ssh-agent socket", func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return sock
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sshAddList(t *testing.T, sock string) string {
	t.Helper()
	cmd := exec.Command("ssh-add", "-l")
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	out, _ := cmd.CombinedOutput() // exit 1 when the agent is empty
	return string(out)
}

func TestLoginAgent(t *testing.T) {
	e := newEnv(t)
	sock := startAgent(t)
	// A certificate that lives a few seconds: the agent must drop the key
	// when it expires, which proves the lifetime constraint reached it.
	e.server.ttl = 4 * time.Second
	o := e.options(io.Discard)
	o.NoAgent = false
	o.AgentSocket = sock
	res, err := Login(testCtx(t), o)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if !res.AgentAdded || res.AgentErr != nil {
		t.Fatalf("agent: added=%v err=%v", res.AgentAdded, res.AgentErr)
	}
	list := sshAddList(t, sock)
	if !strings.Contains(list, "ED25519-CERT") || !strings.Contains(list, "alice/1") {
		t.Fatalf("ssh-add -l does not list the certificate:\n%s", list)
	}
	waitFor(t, 30*time.Second, "the agent to drop the expired key", func() bool {
		return !strings.Contains(sshAddList(t, sock), "ED25519-CERT")
	})
}

func TestLoginAgentUnreachable(t *testing.T) {
	e := newEnv(t)
	o := e.options(nil)
	var out bytes.Buffer
	o.Out = &out
	o.NoAgent = false
	o.AgentSocket = filepath.Join(t.TempDir(), "no-agent.sock")
	res, err := Login(testCtx(t), o)
	if err != nil {
		t.Fatalf("Login failed because of the agent: %v", err)
	}
	if res.AgentAdded || res.AgentErr == nil || !strings.Contains(out.String(), "warning: could not add the key to the ssh-agent") {
		t.Errorf("added=%v err=%v out=%s", res.AgentAdded, res.AgentErr, out.String())
	}
	if _, err := os.Stat(filepath.Join(e.dir, CertFile)); err != nil {
		t.Errorf("identity not written: %v", err)
	}
}
