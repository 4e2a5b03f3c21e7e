package test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jumpgate/jumpgate/devidp"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
)

const chromiumPath = "/usr/bin/chromium"

// newTab starts a real headless Chromium and returns a fresh tab.
func newTab(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser tests need %s (`make test` installs chromium): %v", chromiumPath, err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Flag("headless", true), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 820))
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func browse(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatal(err)
	}
}

// consoleLogin signs user in through the IdP's real login form.
func consoleLogin(t *testing.T, ctx context.Context, srv *harness.Server, user, page string) {
	t.Helper()
	browse(t, ctx,
		chromedp.Navigate(srv.URL+page),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), devidp.DemoPassword(user)),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID(`signed-in-user`)),
	)
}

// TestConsoleApprovesHeldExecAndReplays: an approver approves a held ssh
// exec in the web console and the waiting command completes; an auditor
// replays the bastion's recording of it in the browser.
func TestConsoleApprovesHeldExecAndReplays(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	held := harness.Start(t, nil, "ssh", append(env.alice.SSHArgs("root", "web-1"), "echo held-command-$((6*7))")...)
	var id string
	harness.WaitFor(t, 30*time.Second, "the held command", func() bool {
		var rs []storage.Request
		json.Unmarshal([]byte(env.srv.MustJG(t, "requests", "list", "--json")), &rs)
		for _, r := range rs {
			if r.Status == "pending" {
				id = r.ID
			}
		}
		return id != ""
	})
	dave := newTab(t)
	consoleLogin(t, dave, env.srv, "dave", "/requests")
	form := `form[action="/requests/` + id + `/decide"]`
	browse(t, dave,
		chromedp.WaitVisible(chromedp.CSS(form)),
		chromedp.SendKeys(chromedp.CSS(form+` input[name=reason]`), "looks fine"),
		chromedp.Click(chromedp.CSS(form+` button[value=approve]`)),
	)
	select {
	case <-held.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the held command did not complete after approval in the console")
	}
	if held.Err() != nil || !strings.Contains(held.Out.String(), "held-command-42") {
		t.Fatalf("held command: %v %q", held.Err(), held.Out.String())
	}
	// The auditor replays it.
	var ss []storage.Session
	json.Unmarshal([]byte(env.srv.MustJG(t, "sessions", "list", "--json")), &ss)
	var sid string
	for _, s := range ss {
		if strings.Contains(s.Command, "held-command") {
			sid = s.ID
		}
	}
	if sid == "" {
		t.Fatal("held session not listed")
	}
	carol := newTab(t)
	consoleLogin(t, carol, env.srv, "carol", "/sessions/"+sid)
	browse(t, carol, chromedp.WaitVisible(chromedp.CSS(`.ap-player`)), chromedp.Click(chromedp.CSS(`.ap-player`)))
	c, cancel := context.WithTimeout(carol, 60*time.Second)
	defer cancel()
	const text = `Array.from(document.querySelectorAll('.ap-term-text, .ap-term')).map(function (e) { return e.textContent; }).join('\n')`
	if _, err := chromedp.Run(c, chromedp.Poll[bool](`(`+text+`).includes("held-command-42")`, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("the replayed terminal never showed the output: %v", err)
	}
}

// TestConsoleTerminatesLiveSession: an approver ends a running recorded
// shell from the console; the user sees why and the session ends.
func TestConsoleTerminatesLiveSession(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	term := harness.StartTerminal(t, "ssh", env.alice.SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a prompt", term.Seen("# "))
	var sid string
	harness.WaitFor(t, 30*time.Second, "the running session", func() bool {
		var ss []storage.Session
		json.Unmarshal([]byte(env.srv.MustJG(t, "sessions", "list", "--json", "--status", "running")), &ss)
		for _, s := range ss {
			if s.Kind == "shell" {
				sid = s.ID
			}
		}
		return sid != ""
	})
	dave := newTab(t)
	consoleLogin(t, dave, env.srv, "dave", "/sessions/"+sid)
	t.Cleanup(func() {
		if t.Failed() {
			c, cancel := context.WithTimeout(dave, 10*time.Second)
			defer cancel()
			body, _ := chromedp.Run(c, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Logf("dave's page: %s", body)
		}
	})
	browse(t, dave,
		chromedp.WaitVisible(chromedp.CSS(`form.terminate button`)),
		chromedp.Click(chromedp.CSS(`form.terminate button`)),
	)
	harness.WaitFor(t, 30*time.Second, "the user to be told", term.Seen("ended by dave@example.com"))
	term.Wait(t, 30*time.Second)
	if ev := env.srv.MustJG(t, "audit", "list", "--json", "--type", "session.terminated"); !strings.Contains(ev, sid) {
		t.Fatalf("no session.terminated event: %s", ev)
	}
}
