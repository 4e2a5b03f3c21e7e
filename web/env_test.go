package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/devidp"
	"github.com/jumpgate/jumpgate/httpapi"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/storage/boltstore"
)

const testPolicy = `
roles:
  - name: dev
    groups: [engineering]
    logins: [ubuntu]
    targets: {names: ["web-*"]}
  - name: dba
    groups: [dba]
    logins: [postgres]
    targets: {names: [orders-db]}
  - name: security
    groups: [security]
    logins: [ubuntu]
    targets: {names: ["*"]}
  - name: sre
    groups: [sre-leads]
    logins: [ubuntu]
    targets: {names: ["*"]}
requests:
  approvers: [{groups: [sre-leads]}]
  max_duration: 4h
auditors: [{groups: [security]}]
admins: [{groups: [sre-leads]}]
`

// Demo identities as the ID token names them.
const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
	carol = "carol@example.com"
	dave  = "dave@example.com"
)

// xssPayload is recorded terminal output crafted to escape into HTML or
// abuse terminal features: script tags, a closing script tag, entities,
// OSC 8 hyperlinks to javascript: URLs, OSC 52 clipboard writes, title
// sets and an attribute-breaking image tag.
const xssPayload = "XSS-START <script>alert(1)</script> </script><script>alert(2)</script> &lt;b&gt; &amp; &#60;script&#62; \"'>" +
	"<img src=x onerror=alert(3)>\r\n" +
	"\x1b]8;;javascript:alert(4)\x1b\\click-me\x1b]8;;\x1b\\\r\n" +
	"\x1b]52;c;PHNjcmlwdD5hbGVydCg1KTwvc2NyaXB0Pg==\x07\r\n" +
	"\x1b]0;<script>alert(6)</script>\x07\x1b]2;</title><script>alert(7)</script>\x07" +
	"\x1bP<script>alert(8)</script>\x1b\\ XSS-END\r\n"

// clock is a settable clock shared by the console, audit log and queue.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	srv     *httptest.Server
	api     *httpapi.API
	store   *tamperStore
	audit   *audit.Log
	queue   *approvals.Queue
	console *Console
	clock   *clock
	recDir  string

	// Session ids by role in the fixture.
	aliceSession, bobSession, xssSession, liveSession string
	// live is the open recording of liveSession.
	live *recorder.Writer

	mu         sync.Mutex
	terminated []string
}

// tamperStore is the real store, with an optional corruption of one audit
// record on read (to show a broken hash chain).
type tamperStore struct {
	storage.Store
	mu       sync.Mutex
	tamperAt uint64
}

func (s *tamperStore) AuditRange(ctx context.Context, from uint64, limit int) ([]storage.AuditRecord, error) {
	recs, err := s.Store.AuditRange(ctx, from, limit)
	s.mu.Lock()
	at := s.tamperAt
	s.mu.Unlock()
	for i := range recs {
		if recs[i].Seq == at {
			recs[i].JSON = []byte(strings.Replace(string(recs[i].JSON), `"type":"`, `"type":"x`, 1))
		}
	}
	return recs, err
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	bs, err := boltstore.Open(filepath.Join(dir, "jumpgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	store := &tamperStore{Store: bs}
	alog := audit.New(store, clk.Now, logger)
	pstore := policy.Static(pol)
	queue := &approvals.Queue{Store: store, Audit: alog, Policy: pstore, Clock: clk.Now}
	e := &env{store: store, audit: alog, queue: queue, clock: clk, recDir: filepath.Join(dir, "recordings")}
	e.api = &httpapi.API{Store: store, Policy: pstore, Audit: alog, Approvals: queue, RecordingsDir: e.recDir, Logger: logger, Clock: clk.Now}

	mux := http.NewServeMux()
	e.srv = httptest.NewTLSServer(mux)
	t.Cleanup(e.srv.Close)
	idp, err := devidp.New(devidp.Config{Issuer: e.srv.URL + "/dev-idp", Users: devidp.DemoUsers(), Logger: logger,
		Clients: []devidp.Client{{ID: "jumpgate", RedirectURIs: []string{e.srv.URL + "/auth/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e.console, err = New(Config{Issuer: idp.Issuer(), ClientID: "jumpgate", HTTPClient: e.srv.Client(), API: e.api, Logger: logger, Clock: clk.Now,
		Terminate: func(ctx context.Context, id, by string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.terminated = append(e.terminated, id+" by "+by)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dev-idp/", idp.Handler())
	mux.Handle("/v1/", e.api.Handler())
	mux.Handle("/", e.console.Handler())

	start := clk.Now().Add(-time.Hour)
	e.aliceSession = e.seedSession(t, storage.Session{ID: "s-alice-1", User: alice, Login: "ubuntu", Target: "web-1", Kind: "shell", Start: start, Status: storage.SessionEnded},
		[]string{"$ echo hello\r\n", "hello-from-alice\r\n", "$ rm -rf /\r\njumpgate: blocked by policy\r\n", "$ exit\r\n"}, true)
	e.bobSession = e.seedSession(t, storage.Session{ID: "s-bob-1", User: bob, Login: "postgres", Target: "orders-db", Kind: "shell", Start: start.Add(10 * time.Minute), Status: storage.SessionEnded},
		[]string{"$ cat secrets\r\n", "bob-private-output\r\n"}, true)
	e.xssSession = e.seedSession(t, storage.Session{ID: "s-xss-1", User: alice, Login: "ubuntu", Target: "web-2", Kind: "exec",
		Command: "<script>alert('cmd')</script>", Start: start.Add(20 * time.Minute), Status: storage.SessionEnded},
		[]string{"$ cat evil.txt\r\n", xssPayload}, true)
	e.liveSession = e.seedSession(t, storage.Session{ID: "s-live-1", User: bob, Login: "ubuntu", Target: "web-1", Kind: "shell", Start: clk.Now().Add(-time.Minute), Status: storage.SessionRunning},
		[]string{"$ tail -f app.log\r\n", "live-part-one\r\n"}, false)

	emit := func(ev audit.Event) {
		t.Helper()
		if _, err := alog.Emit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	emit(audit.Event{Type: audit.CertIssued, User: alice, Details: map[string]any{"serial": 1, "principals": []string{"ubuntu"}}})
	emit(audit.Event{Type: audit.SessionStart, User: alice, Target: "web-1", Session: e.aliceSession, Details: map[string]any{"login": "ubuntu"}})
	emit(audit.Event{Type: audit.CommandBlocked, User: alice, Target: "web-1", Session: e.aliceSession,
		Details: map[string]any{"command": "rm -rf /", "rule": `^\s*rm\s+-rf\s+/(\s|$)`, "mode": "interactive", "offset": 1.5}})
	emit(audit.Event{Type: audit.SessionEnd, User: alice, Target: "web-1", Session: e.aliceSession, Details: map[string]any{"sha256": "ab12"}})
	emit(audit.Event{Type: audit.SessionStart, User: bob, Target: "orders-db", Session: e.bobSession})
	emit(audit.Event{Type: audit.CommandBlocked, User: alice, Target: "web-2", Session: e.xssSession,
		Details: map[string]any{"command": "<script>alert('audit')</script></td><img src=x onerror=alert(9)>", "mode": "interactive", "offset": 1}})
	emit(audit.Event{Type: audit.AuthFailed, User: "<b>mallory</b>", Details: map[string]any{"reason": "invalid_token", "cause": "</script><script>alert(10)</script>"}})
	return e
}

// seedSession writes a real recording (one output chunk per half second
// of session time) and indexes the session. With closeIt false the
// recording stays open, as a running session's does.
func (e *env) seedSession(t *testing.T, s storage.Session, chunks []string, closeIt bool) string {
	t.Helper()
	rc := &clock{t: s.Start}
	s.Recording = s.ID + ".cast"
	w, err := recorder.Create(filepath.Join(e.recDir, s.Recording), recorder.Header{Width: 80, Height: 24, Timestamp: s.Start.Unix()}, recorder.Options{Clock: rc.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		rc.Add(500 * time.Millisecond)
		if err := w.Output([]byte(c)); err != nil {
			t.Fatal(err)
		}
		s.Bytes += int64(len(c))
	}
	if closeIt {
		sum, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		s.SHA256, s.End = sum.SHA256, s.Start.Add(time.Duration(len(chunks)+1)*500*time.Millisecond)
	} else {
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		e.live = w
		t.Cleanup(func() { w.Close() })
	}
	if err := e.store.PutSession(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s.ID
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client is an HTTP client that trusts the server, keeps cookies and does
// not follow redirects (tests look at each hop).
func (e *env) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: e.srv.Client().Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// login signs name (a demo user) in through the dev IdP's login form and
// returns the client holding the console cookie, plus the callback
// response's Set-Cookie headers.
func (e *env) login(t *testing.T, name string) (*http.Client, []string) {
	t.Helper()
	hc := e.client(t)
	resp := e.do(t, hc, "GET", "/auth/login?next=/sessions", nil, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login start: %d", resp.StatusCode)
	}
	authURL := resp.Header.Get("Location")
	if !strings.HasPrefix(authURL, e.srv.URL+"/dev-idp/authorize?") {
		t.Fatalf("login start redirects to %q", authURL)
	}
	au, _ := url.Parse(authURL)
	if q := au.Query(); q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" ||
		q.Get("redirect_uri") != e.srv.URL+"/auth/callback" || q.Get("client_id") != "jumpgate" {
		t.Fatalf("authorize URL lacks PKCE, nonce, state or the redirect URI: %s", authURL)
	}
	cb, err := devidp.BrowserLogin(context.Background(), e.srv.Client(), authURL, name, devidp.DemoPassword(name))
	if err != nil {
		t.Fatal(err)
	}
	resp = e.do(t, hc, "GET", cb, nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/sessions" {
		t.Fatalf("callback: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), readBody(t, resp))
	}
	return hc, resp.Header.Values("Set-Cookie")
}

// do sends a request (path relative to the server or absolute URL).
func (e *env) do(t *testing.T, hc *http.Client, method, path string, form url.Values, hdr http.Header) *http.Response {
	t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = e.srv.URL + path
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// get fetches a page and returns status and body.
func (e *env) get(t *testing.T, hc *http.Client, path string) (int, string) {
	t.Helper()
	resp := e.do(t, hc, "GET", path, nil, nil)
	return resp.StatusCode, readBody(t, resp)
}

// csrfOf extracts the CSRF token from a page's logout form.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	const marker = `name="csrf" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatalf("no csrf field in page:\n%s", page)
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}
