package test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

// storageDatabase starts a PostgreSQL with an empty database for
// `storage: postgres://…` and returns the server and that URL.
func storageDatabase(t *testing.T) (*pgtest.Server, string) {
	t.Helper()
	pg := pgtest.Start(t, pgtest.Options{})
	if _, err := pg.SuperSQL("postgres", "CREATE DATABASE jumpgate OWNER "+pgtest.ScramUser); err != nil {
		t.Fatal(err)
	}
	return pg, fmt.Sprintf("postgres://%s:%s@%s/jumpgate?sslmode=disable", pgtest.ScramUser, pgtest.ScramPassword, pg.Addr)
}

// TestReplicasOnPostgres: three jumpgate servers start at once on one
// PostgreSQL (racing to migrate it) and prove, with real ssh clients, every
// point of running as replicas: a certificate from A works at B and C; the
// audit log stays one chain under concurrent writers on all three; an
// approval on B releases a hold on A promptly; a session recorded on A
// replays from C (CLI over HTTPS, local export and replay, C's web console
// in a real browser) while it runs and after it ends; /metrics and /readyz
// work on PostgreSQL; kill -9 of B mid-session
// leaves the others serving and B's session playable up to the crash and
// marked interrupted by a survivor; a revocation on A is enforced by B and C
// within seconds.
func TestReplicasOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	pg, url := storageDatabase(t)
	keys := harness.NewCAKeys(t)
	sshd := keys.StartCertSSHD(t, []string{"web-1", "prod-1"})
	idp := harness.StartIdP(t)
	opts := harness.ServerOptions{IdP: idp, Policy: bastionPolicy,
		ExtraConfig: keys.CAConfig("", "") + "storage: " + url + "\nreplica_lease: 3s\n",
		Targets: []harness.Target{{Name: "web-1", Kind: "ssh", Address: sshd.Addr, HostKey: "@cert-authority", Labels: map[string]string{"env": "test"}},
			{Name: "prod-1", Kind: "ssh", Address: sshd.Addr, HostKey: "@cert-authority", Labels: map[string]string{"env": "prod"}}}}
	srvs := harness.StartServers(t, opts, opts, opts)
	a, b, c := srvs[0], srvs[1], srvs[2]
	if out, err := pg.SuperSQL("jumpgate", "SELECT count(*) FROM schema_migrations"); err != nil || !strings.Contains(out, "3") {
		t.Fatalf("migrations after three concurrent starts: %v %q", err, out)
	}
	aliceA := a.Login(t, "alice")
	daveB := b.Login(t, "dave")
	ctx := ctxT(t, 180*time.Second)
	alice := map[string]*harness.User{"A": aliceA, "B": aliceA.Via(b), "C": aliceA.Via(c)}

	// A's certificate at B and C.
	for _, name := range []string{"B", "C"} {
		if out, err := alice[name].SSH(ctx, "root", "web-1", "echo via-"+name); err != nil || !strings.Contains(out, "via-"+name) {
			t.Fatalf("A's certificate at %s: %v %q", name, err, out)
		}
	}

	// An ID token is traded for a certificate once across the replicas:
	// the same token at A and then at B and C.
	tok := idp.Token(t, "dave")
	for i, s := range []*harness.Server{a, b, c} {
		code, body := postCertificate(t, s, tok)
		if want := map[bool]int{true: 200, false: 401}[i == 0]; code != want {
			t.Fatalf("the same ID token at replica %d: HTTP %d, want %d: %s", i, code, want, body)
		}
		if i > 0 && !strings.Contains(body, "already used") {
			t.Fatalf("replay at replica %d: %s", i, body)
		}
	}

	// Just-in-time access asked on A, approved on B, used through C: when
	// the window closes, C ends its own session (each replica ends the
	// sessions it runs) and one replica writes access.ended.
	out, err := aliceA.JG(t, "request", "--target", "prod-1", "--duration", "8s", "--reason", "replicas")
	if err != nil {
		t.Fatalf("request on A: %v %s", err, out)
	}
	jitID := regexp.MustCompile(`r-[0-9a-f]+`).FindString(out)
	if out, err := daveB.JG(t, "approve", jitID); err != nil {
		t.Fatalf("approve on B: %v %s", err, out)
	}
	jit := harness.StartTerminal(t, "ssh", alice["C"].SSHArgs("root", "prod-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a prompt on prod-1 through C", jit.Seen("#"))
	harness.WaitFor(t, 40*time.Second, "C to end the session when the window closes", jit.Seen("access to prod-1"))
	jit.Wait(t, 30*time.Second)
	harness.WaitFor(t, 10*time.Second, "access.ended", func() bool {
		return strings.Contains(a.MustJG(t, "audit", "list", "--json", "--type", "access.ended"), jitID)
	})
	time.Sleep(2 * time.Second) // two more reaper ticks on every replica
	if ev := b.MustJG(t, "audit", "list", "--json", "--type", "access.ended"); strings.Count(ev, jitID) != 1 {
		t.Fatalf("access.ended for %s written %d times: %s", jitID, strings.Count(ev, jitID), ev)
	}

	// One Kubernetes forwarder CA on every replica (kept in the store), so
	// a kubeconfig from one replica works through the others.
	var kubeCA []string
	for _, s := range []*harness.Server{a, b, c} {
		resp, err := harness.TLSClient(t, s.CAFile).Get(s.URL + "/v1/kube/ca")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "BEGIN CERTIFICATE") {
			t.Fatalf("GET /v1/kube/ca: %d %s", resp.StatusCode, body)
		}
		kubeCA = append(kubeCA, string(body))
	}
	if kubeCA[0] != kubeCA[1] || kubeCA[0] != kubeCA[2] {
		t.Fatal("the replicas serve different Kubernetes forwarder CAs")
	}

	// Concurrent audit writers on all three replicas: one chain.
	var wg sync.WaitGroup
	errs := make(chan error, 9)
	for _, name := range []string{"A", "B", "C"} {
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := alice[name].SSH(ctx, "root", "web-1", fmt.Sprintf("echo concurrent-%s-%d", name, i)); err != nil {
					errs <- fmt.Errorf("%s #%d: %w: %s", name, i, err, out)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range srvs {
		s.MustJG(t, "audit", "verify")
	}

	// A hold on A, approved on B.
	held := harness.Start(t, nil, "ssh", append(aliceA.SSHArgs("root", "web-1"), "echo held-command-replicas")...)
	var id string
	harness.WaitFor(t, 30*time.Second, "the hold", func() bool {
		var rs []storage.Request
		json.Unmarshal([]byte(b.MustJG(t, "requests", "list", "--json")), &rs)
		for _, r := range rs {
			if r.Status == "pending" {
				id = r.ID
			}
		}
		return id != ""
	})
	approved := time.Now()
	if out, err := daveB.JG(t, "approve", id); err != nil {
		t.Fatalf("approve on B: %v %s", err, out)
	}
	t.Logf("jumpgate approve on B took %v", time.Since(approved).Round(time.Millisecond))
	select {
	case <-held.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the approval on B did not release the hold on A within 10 s")
	}
	t.Logf("hold released %v after the approval on the other replica", time.Since(approved).Round(time.Millisecond))
	if !strings.Contains(held.Out.String(), "held-command-replicas") {
		t.Fatalf("held command: %q", held.Out.String())
	}

	// A session recorded on A replays from C while it runs and after.
	term := harness.StartTerminal(t, "ssh", alice["A"].SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a shell prompt", term.Seen("#"))
	term.Type("echo running-on-a-$((2+3))\r")
	harness.WaitFor(t, 30*time.Second, "the output", term.Seen("running-on-a-5"))
	shellID := shellSession(t, c, storage.SessionRunning)
	harness.WaitFor(t, 10*time.Second, "C to export the running session", func() bool {
		out, err := c.JG(t, "sessions", "export", shellID)
		return err == nil && strings.Contains(out, "running-on-a-5")
	})
	// The same through C's HTTPS API, as alice (her own session).
	if out, err := aliceA.JG(t, "sessions", "export", shellID, "--server", c.URL, "--ca-file", c.CAFile); err != nil || !strings.Contains(out, "running-on-a-5") {
		t.Fatalf("export of the running session over C's API: %v %q", err, out)
	}
	term.Type("echo ended-on-a-$((3+4)); exit\r")
	term.Wait(t, 30*time.Second)
	harness.WaitFor(t, 10*time.Second, "the session to end", func() bool { return sessionStatus(t, c, shellID) == storage.SessionEnded })
	cast := c.MustJG(t, "sessions", "export", shellID)
	if !strings.Contains(cast, "ended-on-a-7") {
		t.Fatalf("C's export of the ended session lacks its end:\n%s", cast)
	}
	sum := sha256.Sum256([]byte(cast))
	if got, want := hex.EncodeToString(sum[:]), sessionOf(t, c, shellID).SHA256; got != want {
		t.Fatalf("the recording C exports hashes to %s, A signed %s", got, want)
	}
	if out := c.MustJG(t, "replay", shellID, "--speed", "1000", "--idle-limit", "1ms"); !strings.Contains(out, "ended-on-a-7") {
		t.Fatalf("replay on C: %q", out)
	}
	// And in C's web console, in a real browser, as the auditor carol.
	carol := newTab(t)
	consoleLogin(t, carol, c, "carol", "/sessions/"+shellID)
	browse(t, carol, chromedp.WaitVisible(chromedp.CSS(`.ap-player`)), chromedp.Click(chromedp.CSS(`.ap-player`)))
	pctx, cancel := context.WithTimeout(carol, 60*time.Second)
	defer cancel()
	const termText = `Array.from(document.querySelectorAll('.ap-term-text, .ap-term')).map(function (e) { return e.textContent; }).join('\n')`
	if _, err := chromedp.Run(pctx, chromedp.Poll[bool](`(`+termText+`).includes("ended-on-a-7")`, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("C's console never replayed A's session: %v", err)
	}

	// A shell running on A is ended from B's web console by the approver
	// dave: A ends it (LISTEN/NOTIFY), the user is told who, and one
	// session.terminated event is written.
	term2 := harness.StartTerminal(t, "ssh", alice["A"].SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a shell prompt", term2.Seen("#"))
	runningID := shellSession(t, b, storage.SessionRunning)
	daveTab := newTab(t)
	consoleLogin(t, daveTab, b, "dave", "/sessions/"+runningID)
	browse(t, daveTab, chromedp.WaitVisible(chromedp.CSS(`form.terminate button`)), chromedp.Click(chromedp.CSS(`form.terminate button`)))
	harness.WaitFor(t, 30*time.Second, "the user on A to be told", term2.Seen("ended by dave@example.com"))
	term2.Wait(t, 30*time.Second)
	harness.WaitFor(t, 10*time.Second, "the session to end", func() bool { return sessionStatus(t, c, runningID) == storage.SessionEnded })
	if ev := c.MustJG(t, "audit", "list", "--json", "--type", "session.terminated"); strings.Count(ev, runningID) != 1 {
		t.Fatalf("session.terminated events for %s: %s", runningID, ev)
	}

	// Operations on PostgreSQL: every metric family, recording writes
	// (chunks) observed on A, /readyz ready on every replica.
	page := scrape(t, a)
	checkMetrics(t, page)
	if strings.Contains(page, "jumpgate_recording_write_seconds_count 0\n") {
		t.Error("A recorded a session but observed no chunk write")
	}
	for _, s := range srvs {
		resp, err := harness.TLSClient(t, s.CAFile).Get(s.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/readyz of %s = %d", s.URL, resp.StatusCode)
		}
	}

	// kill -9 of B mid-session.
	term = harness.StartTerminal(t, "ssh", alice["B"].SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a shell prompt on B", term.Seen("#"))
	term.Type("echo before-kill-$((4+4))\r")
	harness.WaitFor(t, 30*time.Second, "the output", term.Seen("before-kill-8"))
	killedID := shellSession(t, a, storage.SessionRunning)
	harness.WaitFor(t, 10*time.Second, "the acknowledged output to reach PostgreSQL", func() bool {
		out, err := a.JG(t, "sessions", "export", killedID)
		return err == nil && strings.Contains(out, "before-kill-8")
	})
	b.Proc.Kill()
	killed := time.Now()
	for _, name := range []string{"A", "C"} {
		if out, err := alice[name].SSH(ctx, "root", "web-1", "echo after-kill-"+name); err != nil || !strings.Contains(out, "after-kill-"+name) {
			t.Fatalf("%s after B was killed: %v %q", name, err, out)
		}
	}
	harness.WaitFor(t, 30*time.Second, "a survivor to mark B's session interrupted", func() bool {
		return sessionStatus(t, c, killedID) == storage.SessionInterrupted
	})
	t.Logf("B's session marked interrupted %v after kill -9", time.Since(killed).Round(time.Millisecond))
	if cast := c.MustJG(t, "sessions", "export", killedID); !strings.Contains(cast, "before-kill-8") {
		t.Fatalf("the killed session's recording lost acknowledged output:\n%s", cast)
	}
	if ev := a.MustJG(t, "audit", "list", "--json", "--type", "session.end"); !strings.Contains(ev, killedID) || !strings.Contains(ev, "interrupted") {
		t.Fatalf("no interrupted session.end for %s: %s", killedID, ev)
	}
	// What B acknowledged before it died is in the log: the session's start.
	if ev := a.MustJG(t, "audit", "list", "--json", "--type", "session.start"); !strings.Contains(ev, killedID) {
		t.Fatalf("B's acknowledged session.start for %s was lost: %s", killedID, ev)
	}
	b.Restart(t) // B comes back on the same data and serves again

	// Revoked on A, refused by B and C within seconds.
	st, _ := aliceA.JG(t, "status")
	var keyID string
	for _, l := range strings.Split(st, "\n") {
		if strings.HasPrefix(l, "key id:") {
			keyID = strings.TrimSpace(strings.TrimPrefix(l, "key id:"))
		}
	}
	if out, err := alice["B"].SSH(ctx, "root", "web-1", "echo b-is-back"); err != nil || !strings.Contains(out, "b-is-back") {
		t.Fatalf("B after its restart: %v %q", err, out)
	}
	a.MustJG(t, "ca", "revoke", "--key-id", keyID)
	for _, name := range []string{"B", "C"} {
		harness.WaitFor(t, 10*time.Second, name+" to refuse the revoked certificate", func() bool {
			_, err := alice[name].SSH(ctx, "root", "web-1", "true")
			return err != nil
		})
	}
	for _, s := range srvs {
		s.MustJG(t, "audit", "verify")
	}
}

func sessionsOf(t *testing.T, s *harness.Server) []storage.Session {
	t.Helper()
	var ss []storage.Session
	if err := json.Unmarshal([]byte(s.MustJG(t, "sessions", "list", "--json")), &ss); err != nil {
		t.Fatal(err)
	}
	return ss
}

// shellSession returns the id of the one shell session with status.
func shellSession(t *testing.T, s *harness.Server, status string) string {
	t.Helper()
	var id string
	harness.WaitFor(t, 10*time.Second, "a "+status+" shell session", func() bool {
		for _, ss := range sessionsOf(t, s) {
			if ss.Kind == "shell" && ss.Status == status {
				id = ss.ID
			}
		}
		return id != ""
	})
	return id
}

func sessionOf(t *testing.T, s *harness.Server, id string) storage.Session {
	t.Helper()
	for _, ss := range sessionsOf(t, s) {
		if ss.ID == id {
			return ss
		}
	}
	t.Fatalf("session %s not listed", id)
	return storage.Session{}
}

func sessionStatus(t *testing.T, s *harness.Server, id string) string {
	return sessionOf(t, s, id).Status
}

// TestRecordingChunksFailClosed: with recordings in PostgreSQL, a recorded
// shell whose chunks can no longer be stored is ended with a clear message,
// as with recording files, and the audit chain stays intact.
func TestRecordingChunksFailClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	pg, url := storageDatabase(t)
	keys := harness.NewCAKeys(t)
	sshd := keys.StartCertSSHD(t, []string{"web-1"})
	srv := harness.StartServer(t, harness.ServerOptions{IdP: harness.StartIdP(t), Policy: bastionPolicy,
		ExtraConfig: keys.CAConfig("", "") + "storage: " + url + "\n",
		Targets:     []harness.Target{{Name: "web-1", Kind: "ssh", Address: sshd.Addr, HostKey: "@cert-authority", Labels: map[string]string{"env": "test"}}}})
	alice := srv.Login(t, "alice")
	term := harness.StartTerminal(t, "ssh", alice.SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a shell prompt", term.Seen("#"))
	// From now on no chunk can be stored (the rows already there stay).
	if _, err := pg.SuperSQL("jumpgate", "ALTER TABLE recording_chunks ADD CONSTRAINT test_no_more_chunks CHECK (seq < 0) NOT VALID"); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 30*time.Second, "the session to end for its recording", func() bool {
		term.Type("echo tick\r")
		return strings.Contains(term.Output(), "recording could not be written")
	})
	term.Wait(t, 30*time.Second)
	if !strings.Contains(srv.Proc.Out.String(), "recordings: store chunk") {
		t.Fatal("the cause was not logged")
	}
	srv.MustJG(t, "audit", "verify")
}

// postCertificate asks s for a certificate with the ID token tok and a
// fresh ed25519 key, and returns the HTTP status and body.
func postCertificate(t *testing.T, s *harness.Server, tok string) (int, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"public_key": string(ssh.MarshalAuthorizedKey(sp))})
	req, err := http.NewRequest(http.MethodPost, s.URL+"/v1/ssh/certificates", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := harness.TLSClient(t, s.CAFile).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
