package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/devidp"
	"github.com/jumpgate/jumpgate/storage"
)

func TestLoginFlow(t *testing.T) {
	e := newEnv(t)
	anon := e.client(t)

	t.Run("pages redirect to login with a local next", func(t *testing.T) {
		resp := e.do(t, anon, "GET", "/audit?type=command.blocked", nil, nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d", resp.StatusCode)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc.Path != "/auth/login" || loc.Query().Get("next") != "/audit?type=command.blocked" {
			t.Fatalf("redirect to %s", loc)
		}
	})

	t.Run("data answers 401 without login", func(t *testing.T) {
		if st, _ := e.get(t, anon, "/sessions/"+e.aliceSession+"/recording"); st != http.StatusUnauthorized {
			t.Fatalf("status %d", st)
		}
	})

	t.Run("login sets a hardened cookie and shows the user", func(t *testing.T) {
		hc, cookies := e.login(t, "carol")
		var found bool
		for _, c := range cookies {
			if !strings.HasPrefix(c, sessionCookie+"=") {
				continue
			}
			found = true
			for _, want := range []string{"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} {
				if !strings.Contains(c, want) {
					t.Errorf("session cookie %q lacks %s", c, want)
				}
			}
			if strings.Contains(c, "Domain=") {
				t.Errorf("session cookie %q has a Domain", c)
			}
		}
		if !found {
			t.Fatalf("no session cookie in %q", cookies)
		}
		for _, path := range []string{"/sessions", "/audit", "/requests", "/sessions/" + e.aliceSession} {
			st, body := e.get(t, hc, path)
			if st != http.StatusOK {
				t.Fatalf("%s: %d", path, st)
			}
			for _, want := range []string{`id="signed-in-user">carol@example.com<`, `href="/sessions"`, `href="/requests"`, `href="/audit"`, `action="/auth/logout"`} {
				if !strings.Contains(body, want) {
					t.Errorf("%s lacks %s", path, want)
				}
			}
		}
	})

	t.Run("open redirect refused", func(t *testing.T) {
		hc := e.client(t)
		resp := e.do(t, hc, "GET", "/auth/login?next="+url.QueryEscape("//evil.example/x"), nil, nil)
		authURL := resp.Header.Get("Location")
		cb, err := devidp.BrowserLogin(context.Background(), e.srv.Client(), authURL, "alice", devidp.DemoPassword("alice"))
		if err != nil {
			t.Fatal(err)
		}
		resp = e.do(t, hc, "GET", cb, nil, nil)
		if loc := resp.Header.Get("Location"); loc != "/sessions" {
			t.Fatalf("callback redirects to %q", loc)
		}
	})

	t.Run("callback refuses forged state, replay and a missing login cookie", func(t *testing.T) {
		hc := e.client(t)
		resp := e.do(t, hc, "GET", "/auth/login", nil, nil)
		authURL := resp.Header.Get("Location")
		cb, err := devidp.BrowserLogin(context.Background(), e.srv.Client(), authURL, "alice", devidp.DemoPassword("alice"))
		if err != nil {
			t.Fatal(err)
		}
		forged, _ := url.Parse(cb)
		q := forged.Query()
		q.Set("state", "forged"+q.Get("state"))
		forged.RawQuery = q.Encode()
		if st, _ := e.get(t, hc, forged.String()); st != http.StatusUnauthorized {
			t.Fatalf("forged state: %d", st)
		}
		// The pending login was spent by the forged attempt: the real
		// callback no longer works either.
		if st, _ := e.get(t, hc, cb); st != http.StatusUnauthorized {
			t.Fatalf("replayed callback: %d", st)
		}
		// A callback without the browser's login cookie (a login started
		// in another browser) is refused.
		resp = e.do(t, e.client(t), "GET", "/auth/login", nil, nil)
		cb2, err := devidp.BrowserLogin(context.Background(), e.srv.Client(), resp.Header.Get("Location"), "alice", devidp.DemoPassword("alice"))
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := e.get(t, e.client(t), cb2); st != http.StatusUnauthorized {
			t.Fatalf("callback without login cookie: %d", st)
		}
	})

	t.Run("login ends with the ID token", func(t *testing.T) {
		hc, _ := e.login(t, "alice")
		e.clock.Add(5 * time.Minute)
		if st, _ := e.get(t, hc, "/sessions"); st != http.StatusOK {
			t.Fatalf("after 5m: %d", st)
		}
		// The dev IdP's ID tokens live 10 minutes: the login ends with it.
		e.clock.Add(6 * time.Minute)
		if st, _ := e.get(t, hc, "/sessions"); st != http.StatusSeeOther {
			t.Fatalf("after the token expired: %d", st)
		}
	})
}

func TestLoginStoreExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := newLoginStore(clk.Now, nil, 8*time.Hour, 2*time.Minute)
	req := func(id string) *http.Request {
		r, _ := http.NewRequest("GET", "https://x/sessions", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
		return r
	}
	for _, tc := range []struct {
		name       string
		tokenTTL   time.Duration
		steps      []time.Duration // each within the idle timeout
		aliveAfter []bool
	}{
		{"idle", 24 * time.Hour, []time.Duration{time.Minute, 90 * time.Second, 2 * time.Minute}, []bool{true, true, false}},
		{"token expiry", 150 * time.Second, []time.Duration{time.Minute, time.Minute, time.Minute}, []bool{true, true, false}},
		{"max age", 0, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var exp time.Time
			if tc.tokenTTL > 0 {
				exp = clk.Now().Add(tc.tokenTTL)
			}
			id, u, err := s.signIn("alice@example.com", []string{"engineering"}, exp)
			if err != nil {
				t.Fatal(err)
			}
			if len(id) != 43 || len(u.csrf) != 43 || id == u.csrf {
				t.Fatalf("ids %q %q are not 256-bit random tokens", id, u.csrf)
			}
			if exp.IsZero() {
				if !u.expires.Equal(clk.Now().Add(8 * time.Hour)) {
					t.Fatalf("expires %v", u.expires)
				}
				return
			}
			for i, d := range tc.steps {
				clk.Add(d)
				if got := s.current(req(id)) != nil; got != tc.aliveAfter[i] {
					t.Fatalf("step %d: alive %v", i, got)
				}
			}
			if s.current(req("forged")) != nil {
				t.Fatal("unknown cookie accepted")
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "/sessions"},
		{"/audit?type=exec", "/audit?type=exec"},
		{"/sessions/s-1?t=2.5", "/sessions/s-1?t=2.5"},
		{"//evil.example", "/sessions"},
		{"/\\evil.example", "/sessions"},
		{"\\\\evil.example", "/sessions"},
		{"https://evil.example/", "/sessions"},
		{"javascript:alert(1)", "/sessions"},
		{"/\t/evil.example", "/sessions"},
		{"/%2F/evil.example", "/sessions"},
		{"/auth/logout", "/sessions"},
		{"evil", "/sessions"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := SafeNext(tc.in); got != tc.want {
				t.Fatalf("SafeNext(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzSafeNext: whatever the input, the result resolves against the
// console's origin to the same origin.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/sessions", "//x", "/\\x", "https://x", "/a?b=c#d", "/%5C%5Cx", "/\x00", ""} {
		f.Add(s)
	}
	base, _ := url.Parse("https://console.example:8443/sessions")
	f.Fuzz(func(t *testing.T, s string) {
		got := SafeNext(s)
		if got != "/sessions" && got != s {
			t.Fatalf("SafeNext(%q) = %q: neither the input nor home", s, got)
		}
		u, err := base.Parse(got)
		if err != nil {
			t.Fatalf("SafeNext(%q) = %q does not parse: %v", s, got, err)
		}
		if u.Scheme != "https" || u.Host != base.Host || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.Contains(got, "\\") {
			t.Fatalf("SafeNext(%q) = %q leaves the origin (%s)", s, got, u)
		}
	})
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	hc, _ := e.login(t, "carol")
	inlineScript := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)
	for _, path := range []string{"/sessions", "/sessions/" + e.aliceSession, "/audit", "/requests", "/nope", "/auth/login"} {
		t.Run(path, func(t *testing.T) {
			resp := e.do(t, hc, "GET", path, nil, nil)
			body := readBody(t, resp)
			csp := resp.Header.Get("Content-Security-Policy")
			if csp != ContentSecurityPolicy {
				t.Fatalf("CSP %q", csp)
			}
			var scriptSrc string
			for _, d := range strings.Split(csp, ";") {
				if f := strings.Fields(d); len(f) > 0 && f[0] == "script-src" {
					scriptSrc = d
				}
			}
			if scriptSrc == "" || strings.Contains(csp, "unsafe-inline") || strings.Contains(scriptSrc, "'unsafe-eval'") {
				t.Fatalf("script-src %q", scriptSrc)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Fatalf("headers %v", resp.Header)
			}
			for _, tag := range inlineScript.FindAllString(body, -1) {
				if !strings.Contains(tag, `src="/static/`) {
					t.Errorf("inline script tag %q", tag)
				}
			}
			if strings.Contains(body, "style=") || strings.Contains(body, "<style") || regexp.MustCompile(`<[^>]*\son[a-z]+=`).MatchString(body) {
				t.Errorf("inline style or handler in page")
			}
		})
	}
	t.Run("static", func(t *testing.T) {
		resp := e.do(t, hc, "GET", "/static/asciinema-player.min.js", nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
			t.Fatalf("player: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, p := range []string{"/static/", "/static/../console.go", "/static/nope.js", "/static/..%2fconsole.go"} {
			if st, body := e.get(t, hc, p); st == http.StatusOK || strings.Contains(body, "package web") {
				t.Errorf("%s: %d", p, st)
			}
		}
	})
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	hc, _ := e.login(t, "carol")
	_, page := e.get(t, hc, "/sessions")
	token := csrfOf(t, page)
	signedIn := func() bool {
		st, _ := e.get(t, hc, "/sessions")
		return st == http.StatusOK
	}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  http.Header
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {token + "x"}}, nil},
		{"cross-site origin", url.Values{"csrf": {token}}, http.Header{"Origin": {"https://evil.example"}}},
		{"cross-site fetch", url.Values{"csrf": {token}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"plain http origin", url.Values{"csrf": {token}}, http.Header{"Origin": {strings.Replace(e.srv.URL, "https:", "http:", 1)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, hc, "POST", "/auth/logout", tc.form, tc.hdr)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if !signedIn() {
				t.Fatal("a refused logout signed out")
			}
		})
	}
	t.Run("GET does not change state", func(t *testing.T) {
		if st, _ := e.get(t, hc, "/auth/logout?csrf="+token); st != http.StatusMethodNotAllowed && st != http.StatusNotFound {
			t.Fatalf("GET logout: %d", st)
		}
		if !signedIn() {
			t.Fatal("signed out by GET")
		}
	})
	t.Run("same-origin post with token", func(t *testing.T) {
		resp := e.do(t, hc, "POST", "/auth/logout", url.Values{"csrf": {token}}, http.Header{"Origin": {e.srv.URL}, "Sec-Fetch-Site": {"same-origin"}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if signedIn() {
			t.Fatal("still signed in after logout")
		}
	})
}

func TestSessionVisibility(t *testing.T) {
	e := newEnv(t)
	aliceC, _ := e.login(t, "alice")
	carolC, _ := e.login(t, "carol")
	daveC, _ := e.login(t, "dave")

	t.Run("engineer lists only her sessions", func(t *testing.T) {
		_, body := e.get(t, aliceC, "/sessions")
		if !strings.Contains(body, e.aliceSession) || strings.Contains(body, e.bobSession) || strings.Contains(body, e.liveSession) {
			t.Fatalf("alice's list:\n%s", body)
		}
		if st, _ := e.get(t, aliceC, "/sessions?user="+url.QueryEscape(bob)); st != http.StatusForbidden {
			t.Fatalf("alice filtering on bob: %d", st)
		}
	})
	t.Run("another user's session is 404 for page and data", func(t *testing.T) {
		for _, c := range []struct {
			name string
			hc   *http.Client
		}{{"alice", aliceC}, {"dave", daveC}} {
			paths := []string{"/sessions/" + e.bobSession, "/sessions/" + e.bobSession + "/recording"}
			if c.name == "alice" {
				// Approvers (dave) see running sessions so they can end them.
				paths = append(paths, "/sessions/"+e.liveSession+"/recording")
			}
			for _, p := range paths {
				st, body := e.get(t, c.hc, p)
				if st != http.StatusNotFound || strings.Contains(body, "bob-private-output") {
					t.Errorf("%s %s: %d", c.name, p, st)
				}
			}
			// Identical to a session that does not exist.
			if st, _ := e.get(t, c.hc, "/sessions/s-nope"); st != http.StatusNotFound {
				t.Errorf("missing session: %d", st)
			}
		}
		if st, _ := e.get(t, daveC, "/sessions/"+e.liveSession); st != http.StatusOK {
			t.Errorf("approver viewing a running session: %d", st)
		}
		resp := e.do(t, aliceC, "POST", "/sessions/"+e.liveSession+"/terminate", url.Values{"csrf": {csrfOf(t, mustGet(t, e, aliceC, "/sessions"))}}, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("alice terminating bob's session: %d", resp.StatusCode)
		}
	})
	t.Run("auditor sees all, filters and replays", func(t *testing.T) {
		_, body := e.get(t, carolC, "/sessions")
		for _, id := range []string{e.aliceSession, e.bobSession, e.liveSession, e.xssSession} {
			if !strings.Contains(body, id) {
				t.Errorf("carol's list lacks %s", id)
			}
		}
		for _, tc := range []struct {
			query      string
			want, not_ []string
		}{
			{"user=" + url.QueryEscape(bob), []string{e.bobSession, e.liveSession}, []string{e.aliceSession}},
			{"target=web-1", []string{e.aliceSession, e.liveSession}, []string{e.bobSession, e.xssSession}},
			{"status=running", []string{e.liveSession}, []string{e.aliceSession, e.bobSession}},
			{"since=5m", []string{e.liveSession}, []string{e.aliceSession}},
		} {
			_, body := e.get(t, carolC, "/sessions?"+tc.query)
			for _, id := range tc.want {
				if !strings.Contains(body, `href="/sessions/`+id+`"`) {
					t.Errorf("%s: lacks %s", tc.query, id)
				}
			}
			for _, id := range tc.not_ {
				if strings.Contains(body, `href="/sessions/`+id+`"`) {
					t.Errorf("%s: shows %s", tc.query, id)
				}
			}
		}
		resp := e.do(t, carolC, "GET", "/sessions/"+e.bobSession+"/recording", nil, nil)
		rec := readBody(t, resp)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-asciicast" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
			t.Fatalf("recording: %d %v", resp.StatusCode, resp.Header)
		}
		if !strings.HasPrefix(rec, `{"version":2`) || !strings.Contains(rec, "bob-private-output") {
			t.Fatalf("recording body:\n%s", rec)
		}
		_, page := e.get(t, carolC, "/sessions/"+e.aliceSession+"?t=1.5")
		for _, want := range []string{`data-src="/sessions/` + e.aliceSession + `/recording"`, `data-start-at="1.5"`, `data-seek="1.5"`, `blocked: rm -rf /`} {
			if !strings.Contains(page, want) {
				t.Errorf("session page lacks %s", want)
			}
		}
	})
	t.Run("live session shows what was written so far", func(t *testing.T) {
		_, page := e.get(t, carolC, "/sessions?status=running")
		if !strings.Contains(page, "watch") {
			t.Fatalf("running session not marked live")
		}
		_, page = e.get(t, carolC, "/sessions/"+e.liveSession)
		if !strings.Contains(page, "still running") || !strings.Contains(page, "End this session now") {
			t.Fatalf("live page:\n%s", page)
		}
		_, rec := e.get(t, carolC, "/sessions/"+e.liveSession+"/recording")
		if !strings.Contains(rec, "live-part-one") || strings.Contains(rec, "live-part-two") {
			t.Fatalf("live recording:\n%s", rec)
		}
		if err := e.live.Output([]byte("live-part-two\r\n")); err != nil {
			t.Fatal(err)
		}
		if err := e.live.Sync(); err != nil {
			t.Fatal(err)
		}
		_, rec = e.get(t, carolC, "/sessions/"+e.liveSession+"/recording")
		if !strings.Contains(rec, "live-part-two") {
			t.Fatalf("the recording did not grow:\n%s", rec)
		}
	})
	t.Run("terminate", func(t *testing.T) {
		token := csrfOf(t, mustGet(t, e, carolC, "/sessions"))
		resp := e.do(t, carolC, "POST", "/sessions/"+e.liveSession+"/terminate", url.Values{"csrf": {token}}, nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("terminate: %d", resp.StatusCode)
		}
		e.mu.Lock()
		got := strings.Join(e.terminated, ",")
		e.mu.Unlock()
		if got != e.liveSession+" by "+carol {
			t.Fatalf("terminated %q", got)
		}
		// alice's own sessions: she sees them but may not end sessions.
		token = csrfOf(t, mustGet(t, e, aliceC, "/sessions"))
		resp = e.do(t, aliceC, "POST", "/sessions/"+e.aliceSession+"/terminate", url.Values{"csrf": {token}}, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("alice terminate: %d", resp.StatusCode)
		}
	})
}

func mustGet(t *testing.T, e *env, hc *http.Client, path string) string {
	t.Helper()
	st, body := e.get(t, hc, path)
	if st != http.StatusOK {
		t.Fatalf("%s: %d", path, st)
	}
	return body
}

func TestAuditPage(t *testing.T) {
	e := newEnv(t)
	carolC, _ := e.login(t, "carol")
	aliceC, _ := e.login(t, "alice")

	t.Run("auditor sees every type with the chain verified", func(t *testing.T) {
		body := mustGet(t, e, carolC, "/audit")
		n, err := audit.Verify(context.Background(), e.store)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, "Hash chain intact: ") || !strings.Contains(body, ">✔ Hash chain intact: "+strconv.Itoa(n)+" events verified") {
			t.Fatalf("no chain result for %d events:\n%s", n, body)
		}
		for _, typ := range []string{audit.CertIssued, audit.SessionStart, audit.CommandBlocked, audit.AuthFailed, audit.SessionEnd} {
			if !strings.Contains(body, `<span class="type">`+typ+`</span>`) {
				t.Errorf("lacks %s", typ)
			}
		}
	})
	t.Run("filters", func(t *testing.T) {
		body := mustGet(t, e, carolC, "/audit?type=command.blocked")
		if strings.Count(body, `<span class="type">`) != 2 || strings.Contains(body, `<span class="type">session.start`) {
			t.Fatalf("type filter:\n%s", body)
		}
		if !strings.Contains(body, `href="/sessions/`+e.aliceSession+`?t=1.5"`) {
			t.Fatalf("no jump link to the blocked command")
		}
		body = mustGet(t, e, carolC, "/audit?type=session.&user="+url.QueryEscape(bob))
		if strings.Count(body, `<span class="type">`) != 1 || !strings.Contains(body, e.bobSession) {
			t.Fatalf("prefix and user filter:\n%s", body)
		}
		body = mustGet(t, e, carolC, "/audit?since=1m")
		e.clock.Add(2 * time.Minute)
		later := mustGet(t, e, carolC, "/audit?since=1m")
		if strings.Count(body, `<span class="type">`) == 0 || strings.Count(later, `<span class="type">`) != 0 {
			t.Fatalf("since filter: %d then %d events", strings.Count(body, `<span class="type">`), strings.Count(later, `<span class="type">`))
		}
		if st, _ := e.get(t, carolC, "/audit?since=yesterday"); st != http.StatusBadRequest {
			t.Fatalf("bad since: %d", st)
		}
	})
	t.Run("engineer sees her own events, no chain check", func(t *testing.T) {
		body := mustGet(t, e, aliceC, "/audit")
		if strings.Contains(body, bob) || strings.Contains(body, "Hash chain") || !strings.Contains(body, "cert.issued") {
			t.Fatalf("alice's audit:\n%s", body)
		}
		if st, _ := e.get(t, aliceC, "/audit?user="+url.QueryEscape(bob)); st != http.StatusForbidden {
			t.Fatalf("alice asking for bob's events: %d", st)
		}
	})
	t.Run("a broken chain is shown", func(t *testing.T) {
		e.store.mu.Lock()
		e.store.tamperAt = 3
		e.store.mu.Unlock()
		body := mustGet(t, e, carolC, "/audit")
		if !strings.Contains(body, "Hash chain BROKEN after 2 good events") {
			t.Fatalf("tampering not shown:\n%s", body)
		}
	})
}

func TestRequests(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mk := func(u, target, reason string) storage.Request {
		r, err := e.queue.Create(ctx, storage.Request{Kind: storage.KindAccess, User: u, Target: target, What: "access to " + target + " for 1h", Reason: reason, Duration: time.Hour}, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	aliceReq := mk(alice, "web-9", "deploy hotfix")
	bobReq := mk(bob, "orders-db", "<script>alert('reason')</script>")
	daveReq := mk(dave, "prod-1", "incident 42")
	shortReq, err := e.queue.Create(ctx, storage.Request{Kind: storage.KindAccess, User: bob, Target: "web-3", What: "access to web-3 for 1h", Reason: "quick look", Duration: time.Hour}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	daveC, _ := e.login(t, "dave")
	aliceC, _ := e.login(t, "alice")
	carolC, _ := e.login(t, "carol")

	decide := func(hc *http.Client, id, action, reason string) *http.Response {
		token := csrfOf(t, mustGet(t, e, hc, "/requests"))
		return e.do(t, hc, "POST", "/requests/"+id+"/decide", url.Values{"csrf": {token}, "action": {action}, "reason": {reason}}, nil)
	}
	status := func(id string) storage.Request {
		r, err := e.store.Request(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("approver sees pending with forms, not for his own", func(t *testing.T) {
		body := mustGet(t, e, daveC, "/requests")
		for _, id := range []string{aliceReq.ID, bobReq.ID, daveReq.ID} {
			if !strings.Contains(body, `id="req-`+id+`"`) {
				t.Errorf("lacks %s", id)
			}
		}
		if !strings.Contains(body, `action="/requests/`+aliceReq.ID+`/decide"`) || strings.Contains(body, `action="/requests/`+daveReq.ID+`/decide"`) {
			t.Fatalf("decide forms wrong:\n%s", body)
		}
		if !strings.Contains(body, "Your own request") {
			t.Fatal("own request not explained")
		}
	})
	t.Run("engineer sees only her own and cannot decide", func(t *testing.T) {
		body := mustGet(t, e, aliceC, "/requests")
		if !strings.Contains(body, aliceReq.ID) || strings.Contains(body, bobReq.ID) || strings.Contains(body, "/decide") {
			t.Fatalf("alice's requests:\n%s", body)
		}
		if resp := decide(aliceC, daveReq.ID, "approve", "looks fine"); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("alice approving: %d", resp.StatusCode)
		}
		if resp := decide(aliceC, aliceReq.ID, "approve", "mine"); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("alice approving her own: %d", resp.StatusCode)
		}
	})
	t.Run("nobody approves their own request", func(t *testing.T) {
		resp := decide(daveC, daveReq.ID, "approve", "trust me")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(readBody(t, resp), "their own request") {
			t.Fatalf("own approve: %d", resp.StatusCode)
		}
		if st := status(daveReq.ID).Status; st != storage.StatusPending {
			t.Fatalf("dave's request is %s", st)
		}
	})
	t.Run("a reason is required", func(t *testing.T) {
		if resp := decide(daveC, bobReq.ID, "deny", "  "); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("deny without reason: %d", resp.StatusCode)
		}
		if resp := decide(daveC, bobReq.ID, "maybe", "x"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("unknown action: %d", resp.StatusCode)
		}
	})
	t.Run("approve and deny", func(t *testing.T) {
		resp := decide(daveC, aliceReq.ID, "approve", "hotfix ok")
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("approve: %d %s", resp.StatusCode, readBody(t, resp))
		}
		r := status(aliceReq.ID)
		if r.Status != storage.StatusApproved || r.DecidedBy != dave || r.DecisionReason != "hotfix ok" || r.AccessUntil.IsZero() {
			t.Fatalf("approved request %+v", r)
		}
		if resp := decide(daveC, bobReq.ID, "deny", "use the read replica"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("deny: %d", resp.StatusCode)
		}
		if r := status(bobReq.ID); r.Status != storage.StatusDenied || r.DecisionReason != "use the read replica" {
			t.Fatalf("denied request %+v", r)
		}
		if resp := decide(daveC, aliceReq.ID, "deny", "changed my mind"); resp.StatusCode != http.StatusConflict {
			t.Fatalf("second decision: %d", resp.StatusCode)
		}
		events, _, err := audit.List(ctx, e.store, audit.Filter{Type: "request."})
		if err != nil {
			t.Fatal(err)
		}
		var approved, denied bool
		for _, ev := range events {
			approved = approved || (ev.Type == audit.RequestApproved && ev.User == dave && ev.Details["request"] == aliceReq.ID)
			denied = denied || (ev.Type == audit.RequestDenied && ev.User == dave && ev.Details["request"] == bobReq.ID)
		}
		if !approved || !denied {
			t.Fatalf("decisions not audited: %+v", events)
		}
		for _, tc := range []struct{ tab, has, not string }{
			{"approved", aliceReq.ID, bobReq.ID},
			{"denied", bobReq.ID, aliceReq.ID},
			{"pending", daveReq.ID, aliceReq.ID},
		} {
			body := mustGet(t, e, carolC, "/requests?status="+tc.tab)
			if !strings.Contains(body, `id="req-`+tc.has+`"`) || strings.Contains(body, `id="req-`+tc.not+`"`) {
				t.Errorf("tab %s wrong", tc.tab)
			}
		}
		// carol, an auditor, sees every request but decides none.
		if body := mustGet(t, e, carolC, "/requests"); strings.Contains(body, "/decide") {
			t.Errorf("auditor gets decide forms")
		}
	})
	t.Run("expired", func(t *testing.T) {
		e.clock.Add(2 * time.Minute)
		body := mustGet(t, e, daveC, "/requests?status=expired")
		if !strings.Contains(body, `id="req-`+shortReq.ID+`"`) || strings.Contains(body, `id="req-`+daveReq.ID+`"`) {
			t.Fatalf("expired tab lacks dave's request:\n%s", body)
		}
	})
}

// TestRecordedOutputNeverBecomesHTML: a recording, session command, audit
// details and a request reason full of markup and terminal tricks appear
// on no page unescaped, and the recording is served only as inert data.
func TestRecordedOutputNeverBecomesHTML(t *testing.T) {
	e := newEnv(t)
	if _, err := e.queue.Create(context.Background(), storage.Request{Kind: storage.KindAccess, User: alice, Target: "web-9",
		What: "<img src=x onerror=alert(11)>", Reason: "</td></tr><script>alert(12)</script>", Duration: time.Hour}, time.Hour); err != nil {
		t.Fatal(err)
	}
	forbidden := []string{
		"<script>alert", "</script><script>", "<img src=x", "javascript:alert", "<b>mallory</b>",
		"\x1b]", "\x1b", "PHNjcmlwdD5", "</title><script",
	}
	for _, who := range []string{"carol", "alice", "dave"} {
		hc, _ := e.login(t, who)
		for _, path := range []string{"/sessions", "/sessions/" + e.xssSession, "/sessions/" + e.xssSession + "?t=1", "/audit", "/audit?type=command.blocked",
			"/requests", "/requests?status=all", "/sessions?target=" + url.QueryEscape("<script>alert(1)</script>")} {
			t.Run(who+path, func(t *testing.T) {
				_, body := e.get(t, hc, path)
				for _, f := range forbidden {
					if strings.Contains(body, f) {
						i := strings.Index(body, f)
						t.Errorf("page contains %q: ...%s...", f, body[max(0, i-80):min(len(body), i+80)])
					}
				}
			})
		}
	}
	carolC, _ := e.login(t, "carol")
	page := mustGet(t, e, carolC, "/sessions/"+e.xssSession)
	if !strings.Contains(page, "&lt;script&gt;alert(&#39;cmd&#39;)&lt;/script&gt;") {
		t.Errorf("the session command is not shown escaped")
	}
	resp := e.do(t, carolC, "GET", "/sessions/"+e.xssSession+"/recording", nil, nil)
	rec := readBody(t, resp)
	if resp.Header.Get("Content-Type") != "application/x-asciicast" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("recording headers %v", resp.Header)
	}
	// The data itself is faithful: the player shows the bytes as text.
	if !strings.Contains(rec, `<script>alert(1)</script>`) || !strings.Contains(rec, `\u001b]52;c;`) {
		t.Fatalf("recording is not faithful:\n%s", rec)
	}
}

func TestPendingLoginsBounded(t *testing.T) {
	clk := &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := newLoginStore(clk.Now, nil, time.Hour, time.Hour)
	for i := 0; i < maxPendingLogins; i++ {
		if _, err := s.startLogin(&pendingLogin{}); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	if _, err := s.startLogin(&pendingLogin{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("over the bound: %v", err)
	}
	clk.Add(loginTimeout)
	if _, err := s.startLogin(&pendingLogin{}); err != nil {
		t.Fatalf("after the pending logins expired: %v", err)
	}
}
