package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

// TestReplicasOnPostgres: two jumpgate servers share one PostgreSQL. A
// certificate from A works at B, an approval given on B releases a hold on
// A promptly, a revocation made on A is enforced by B, and the audit log is
// one chain.
func TestReplicasOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	pg := pgtest.Start(t, pgtest.Options{})
	if _, err := pg.SuperSQL("postgres", "CREATE DATABASE jumpgate OWNER "+pgtest.ScramUser); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("postgres://%s:%s@%s/jumpgate?sslmode=disable", pgtest.ScramUser, pgtest.ScramPassword, pg.Addr)
	keys := harness.NewCAKeys(t)
	sshd := keys.StartCertSSHD(t, []string{"web-1"})
	idp := harness.StartIdP(t)
	opts := harness.ServerOptions{IdP: idp, Policy: bastionPolicy, ExtraConfig: keys.CAConfig("", "") + "storage: " + url + "\n",
		Targets: []harness.Target{{Name: "web-1", Kind: "ssh", Address: sshd.Addr, HostKey: "@cert-authority", Labels: map[string]string{"env": "test"}}}}
	a := harness.StartServer(t, opts)
	b := harness.StartServer(t, opts)
	aliceA := a.Login(t, "alice")
	daveB := b.Login(t, "dave")
	ctx := ctxT(t, 120*time.Second)

	// alice's certificate from A, used at B.
	aliceAtB := aliceA.Via(b)
	if out, err := aliceAtB.SSH(ctx, "root", "web-1", "echo via-b"); err != nil || !strings.Contains(out, "via-b") {
		t.Fatalf("A's certificate at B: %v %q", err, out)
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
	select {
	case <-held.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the approval on B did not release the hold on A within 10 s")
	}
	t.Logf("hold released %v after the approval on the other replica", time.Since(approved).Round(time.Millisecond))
	if !strings.Contains(held.Out.String(), "held-command-replicas") {
		t.Fatalf("held command: %q", held.Out.String())
	}
	// Revoked on A, refused by B within seconds.
	st, _ := aliceA.JG(t, "status")
	var keyID string
	for _, l := range strings.Split(st, "\n") {
		if strings.HasPrefix(l, "key id:") {
			keyID = strings.TrimSpace(strings.TrimPrefix(l, "key id:"))
		}
	}
	a.MustJG(t, "ca", "revoke", "--key-id", keyID)
	harness.WaitFor(t, 10*time.Second, "B to refuse the revoked certificate", func() bool {
		_, err := aliceAtB.SSH(ctx, "root", "web-1", "true")
		return err != nil
	})
	for _, s := range []*harness.Server{a, b} {
		s.MustJG(t, "audit", "verify")
	}
}
