package test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
)

// TestJustInTimeAccess: alice asks for prod-1, dave approves, alice
// reaches it until the window closes; then her open session is ended with
// a message and the certificate she got during the window is revoked.
func TestJustInTimeAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	var hookMu sync.Mutex
	var hooks []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		hooks = append(hooks, string(b))
		hookMu.Unlock()
	}))
	defer hook.Close()
	env := startBastionEnv(t, "notifications: {webhooks: [{url: \""+hook.URL+"/slack\"}]}\n")
	alice, dave := env.alice, env.dave
	ctx := ctxT(t, 120*time.Second)
	if out, err := alice.SSH(ctx, "root", "prod-1", "echo SHOULD-NOT-RUN"); err == nil {
		t.Fatalf("prod-1 reachable before the request: %s", out)
	}
	if out, err := alice.JG(t, "request", "--target", "prod-1", "--duration", "6h", "--reason", "too long"); err == nil {
		t.Fatalf("a request above max_duration was accepted: %s", out)
	}
	out, err := alice.JG(t, "request", "--target", "prod-1", "--duration", "8s", "--reason", "incident 42")
	if err != nil {
		t.Fatalf("request: %v %s", err, out)
	}
	id := regexp.MustCompile(`r-[0-9a-f]+`).FindString(out)
	if out, err := alice.JG(t, "approve", id); err == nil {
		t.Fatalf("self-approval accepted: %s", out)
	}
	var listed []storage.Request
	json.Unmarshal([]byte(env.srv.MustJG(t, "requests", "list", "--json")), &listed)
	if len(listed) == 0 || listed[len(listed)-1].Kind != "access" || listed[len(listed)-1].Status != "pending" {
		t.Fatalf("requests list: %+v", listed)
	}
	if out, err := dave.JG(t, "approve", id); err != nil {
		t.Fatalf("approve: %v %s", err, out)
	}
	// Access takes effect at the bastion for the existing certificate.
	if out, err := alice.SSH(ctx, "root", "prod-1", "echo jit-ok"); err != nil || !strings.Contains(out, "jit-ok") {
		t.Fatalf("prod-1 after approval: %v %q", err, out)
	}
	// A certificate issued during the window outlives it: it gets revoked.
	later := env.srv.Login(t, "alice")
	term := harness.StartTerminal(t, "ssh", later.SSHArgs("root", "prod-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a prompt on prod-1", term.Seen("#"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("access.ended: %s", env.srv.MustJG(t, "audit", "list", "--json", "--type", "access."))
		}
	})
	harness.WaitFor(t, 30*time.Second, "the session to be ended with a message", term.Seen("access to prod-1"))
	term.Wait(t, 30*time.Second)
	if out, err := later.SSH(ctx, "root", "web-1", "echo SHOULD-NOT-RUN"); err == nil {
		t.Fatalf("a certificate outliving the window still works: %s", out)
	}
	if out, err := alice.SSH(ctx, "root", "prod-1", "echo SHOULD-NOT-RUN"); err == nil {
		t.Fatalf("prod-1 still reachable after the window: %s", out)
	}
	if out, err := alice.SSH(ctx, "root", "web-1", "echo normal-ok"); err != nil || !strings.Contains(out, "normal-ok") {
		t.Fatalf("alice's normal access broke: %v %q", err, out)
	}
	events := env.srv.MustJG(t, "audit", "list", "--json", "--type", "access.ended")
	if !strings.Contains(events, id) || !strings.Contains(events, "revoked_serials") {
		t.Fatalf("access.ended: %s", events)
	}
	env.srv.MustJG(t, "audit", "verify")
	// The webhook heard about the request and the decision.
	harness.WaitFor(t, 10*time.Second, "webhook notifications", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		all := strings.Join(hooks, "\n")
		return strings.Contains(all, "asks for access to prod-1") && strings.Contains(all, "approved by dave")
	})
}
