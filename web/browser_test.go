package web

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/jumpgate/jumpgate/devidp"
	"github.com/jumpgate/jumpgate/storage"
)

var update = flag.Bool("update", false, "rewrite the screenshots under testdata/screenshots")

const chromiumPath = "/usr/bin/chromium"

// browser is one real headless Chromium for a test.
type browser struct {
	ctx context.Context // the browser's root chromedp context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser tests need %s (apt-get install chromium; `make test` installs it): %v", chromiumPath, err)
	}
	if testing.Short() {
		t.Skip("browser tests are skipped with -short")
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 820),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	var pid int
	if p := chromedp.FromContext(ctx).Browser.Process(); p != nil {
		pid = p.Pid
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if pid > 0 {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill() // already gone after cancel; harmless
			}
		}
	})
	return &browser{ctx: ctx}
}

// tab is one signed-in user in its own browser context (own cookies).
type tab struct {
	ctx     context.Context
	mu      sync.Mutex
	dialogs []string
}

func (b *browser) newTab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	tb := &tab{ctx: ctx}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.dialogs = append(tb.dialogs, string(ev.Type)+": "+ev.Message)
			tb.mu.Unlock()
			// Unblock the page so the test can go on and report it.
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	// Collect CSP violations of every document this tab loads. Scripts
	// added over the DevTools protocol are not subject to the page's CSP.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__csp = []; document.addEventListener('securitypolicyviolation', function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });`,
	}); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return tb
}

func (tb *tab) Dialogs() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.dialogs...)
}

// run runs steps with a deadline so a broken page fails instead of hanging.
func (tb *tab) run(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func evalIn[T any](t *testing.T, tb *tab, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// login signs name in through the dev IdP's real login form.
func (tb *tab) login(t *testing.T, e *env, name string) {
	t.Helper()
	tb.run(t,
		chromedp.Navigate(e.srv.URL+"/sessions"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), name),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), devidp.DemoPassword(name)),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID(`signed-in-user`)),
	)
	if who := evalIn[string](t, tb, `document.getElementById('signed-in-user').textContent`); who != name+"@example.com" {
		t.Fatalf("signed in as %q", who)
	}
}

// terminalText is the text the player's terminal grid shows.
const terminalText = `Array.from(document.querySelectorAll('.ap-term-text, .ap-term')).map(function (e) { return e.textContent; }).join('\n')`

// playToEnd starts the player and waits until its terminal shows want.
func (tb *tab) playUntil(t *testing.T, want string) string {
	t.Helper()
	tb.run(t,
		chromedp.WaitVisible(chromedp.CSS(`.ap-player`)),
		chromedp.Click(chromedp.CSS(`.ap-player`)),
	)
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(`+terminalText+`).includes(`+jsString(want)+`)`, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		got := evalIn[string](t, tb, terminalText)
		t.Fatalf("terminal never showed %q (%v); it shows:\n%s", want, err, got)
	}
	return evalIn[string](t, tb, terminalText)
}

func jsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == '<' || r == '>':
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func (tb *tab) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 1000 {
		t.Fatalf("screenshot %s is not a PNG", name)
	}
	if *update {
		p := filepath.Join("testdata", "screenshots", name+".png")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (tb *tab) noCSPViolations(t *testing.T) {
	t.Helper()
	if v := evalIn[[]string](t, tb, `window.__csp || []`); len(v) > 0 {
		t.Errorf("CSP violations: %q", v)
	}
}

func TestBrowser(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t)
	ctx := context.Background()
	for _, r := range []storage.Request{
		{Kind: storage.KindAccess, User: alice, Target: "web-9", What: "access to web-9 for 1h0m0s", Reason: "deploy hotfix #311", Duration: time.Hour},
		{Kind: storage.KindCommand, User: bob, Target: "web-1", Session: e.liveSession, What: "sudo systemctl restart app", Reason: "held by policy: review ^\\s*sudo\\b"},
		{Kind: storage.KindAccess, User: dave, Target: "prod-1", What: "access to prod-1 for 30m0s", Reason: "incident 42", Duration: 30 * time.Minute},
	} {
		if _, err := e.queue.Create(ctx, r, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("auditor replays a session and jumps to the blocked command", func(t *testing.T) {
		tb := b.newTab(t)
		tb.login(t, e, "carol")
		tb.screenshot(t, "sessions")
		tb.run(t, chromedp.Navigate(e.srv.URL+"/sessions/"+e.aliceSession))
		got := tb.playUntil(t, "$ exit")
		if !strings.Contains(got, "hello-from-alice") || !strings.Contains(got, "blocked by policy") {
			t.Fatalf("terminal text:\n%s", got)
		}
		tb.screenshot(t, "replay")
		// The jump button seeks to the blocked command (1.5s): the
		// screen then shows the output up to it and not what came later.
		tb.run(t, chromedp.Click(chromedp.CSS(`button.seek[data-seek="1.5"]`)))
		cctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
		defer cancel()
		if _, err := chromedp.Run(cctx, chromedp.Poll[bool](`!(`+terminalText+`).includes("$ exit")`)); err != nil {
			t.Fatalf("seek did not rewind: %v\n%s", err, evalIn[string](t, tb, terminalText))
		}
		if got := evalIn[string](t, tb, terminalText); !strings.Contains(got, "hello-from-alice") {
			t.Fatalf("after the jump the terminal shows:\n%s", got)
		}
		tb.noCSPViolations(t)

		tb.run(t, chromedp.Navigate(e.srv.URL+"/audit"), chromedp.WaitVisible(chromedp.ID(`chain`)))
		if chain := evalIn[string](t, tb, `document.getElementById('chain').textContent`); !strings.Contains(chain, "Hash chain intact") {
			t.Fatalf("chain: %q", chain)
		}
		tb.screenshot(t, "audit")
		// The audit page's jump link opens the replay at the blocked command.
		tb.run(t, chromedp.Click(chromedp.CSS(`a.jump[href="/sessions/`+e.aliceSession+`?t=1.5"]`)), chromedp.WaitVisible(chromedp.CSS(`.ap-player`)))
		if at := evalIn[string](t, tb, `document.getElementById('player').dataset.startAt`); at != "1.5" {
			t.Fatalf("replay starts at %q", at)
		}
		tb.noCSPViolations(t)
	})

	t.Run("a running session replays what was written so far", func(t *testing.T) {
		tb := b.newTab(t)
		tb.login(t, e, "carol")
		tb.run(t, chromedp.Navigate(e.srv.URL+"/sessions/"+e.liveSession))
		if got := tb.playUntil(t, "live-part-one"); !strings.Contains(got, "tail -f app.log") {
			t.Fatalf("live terminal:\n%s", got)
		}
		if n := evalIn[int](t, tb, `document.querySelectorAll('form.terminate button').length`); n != 1 {
			t.Fatalf("%d terminate buttons", n)
		}
		tb.noCSPViolations(t)
	})

	t.Run("approver sees the requests", func(t *testing.T) {
		tb := b.newTab(t)
		tb.login(t, e, "dave")
		tb.run(t, chromedp.Navigate(e.srv.URL+"/requests"), chromedp.WaitVisible(chromedp.ID(`requests`)))
		if n := evalIn[int](t, tb, `document.querySelectorAll('form.decide').length`); n != 2 {
			t.Fatalf("%d decide forms, want 2 (not for dave's own)", n)
		}
		tb.screenshot(t, "requests")
	})

	t.Run("engineer cannot see another user's session", func(t *testing.T) {
		tb := b.newTab(t)
		tb.login(t, e, "alice")
		tb.run(t, chromedp.Navigate(e.srv.URL+"/sessions/"+e.bobSession), chromedp.WaitVisible(chromedp.CSS(`h1`)))
		if h := evalIn[string](t, tb, `document.querySelector('h1').textContent`); !strings.HasPrefix(h, "404") {
			t.Fatalf("bob's session page for alice: %q", h)
		}
		if body := evalIn[string](t, tb, `document.body.textContent`); strings.Contains(body, "bob-private-output") || strings.Contains(body, "orders-db") {
			t.Fatal("bob's session leaks into the 404 page")
		}
		st := evalIn[int](t, tb, `fetch('/sessions/`+e.bobSession+`/recording').then(function (r) { return r.status; })`)
		if st != 404 {
			t.Fatalf("bob's recording for alice: %d", st)
		}
		tb.run(t, chromedp.Navigate(e.srv.URL+"/sessions"), chromedp.WaitVisible(chromedp.ID(`sessions`)))
		if body := evalIn[string](t, tb, `document.getElementById('sessions').textContent`); strings.Contains(body, "orders-db") || !strings.Contains(body, "web-1") {
			t.Fatalf("alice's session list:\n%s", body)
		}
	})

	t.Run("hostile recording renders as text and runs nothing", func(t *testing.T) {
		tb := b.newTab(t)
		tb.login(t, e, "alice")
		tb.run(t, chromedp.Navigate(e.srv.URL+"/sessions/"+e.xssSession))
		got := tb.playUntil(t, "XSS-END")
		for _, want := range []string{"<script>alert(1)</script>", "</script><script>alert(2)</script>", "&lt;b&gt; &amp;", "<img src=x onerror=alert(3)>", "click-me"} {
			if !strings.Contains(got, want) {
				t.Errorf("terminal lacks the literal text %q:\n%s", want, got)
			}
		}
		if d := tb.Dialogs(); len(d) > 0 {
			t.Fatalf("dialogs opened: %q", d)
		}
		if n := evalIn[int](t, tb, `document.scripts.length`); n != 2 {
			t.Errorf("%d script elements, want the 2 the console ships", n)
		}
		if n := evalIn[int](t, tb, `document.querySelectorAll('img[src="x"], a[href^="javascript"], iframe, object, embed').length`); n != 0 {
			t.Errorf("%d injected elements", n)
		}
		if title := evalIn[string](t, tb, `document.title`); title != "Session · jumpgate" {
			t.Errorf("title changed to %q", title)
		}
		tb.noCSPViolations(t)
		// Opening the recording URL itself shows no document.
		tb.run(t, chromedp.Navigate(e.srv.URL+"/"))
		if d := tb.Dialogs(); len(d) > 0 {
			t.Fatalf("dialogs opened: %q", d)
		}
	})
}
