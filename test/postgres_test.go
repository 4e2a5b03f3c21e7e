package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

const postgresPolicy = `
roles:
  - name: dba
    groups: [dba]
    targets: {names: [orders-db]}
    sql:
      block: [drop, truncate, alter_role, delete_without_where, update_without_where]
      review: [ddl]
    mask:
      columns: ["*.ssn", "customers.email"]
      patterns: [credit_card]
requests: {approvers: [{groups: [sre-leads]}]}
auditors: [{groups: [security]}]
`

// TestPostgresThroughBastion: psql reaches a real PostgreSQL through
// `ssh -L` and the bastion's PostgreSQL forwarder, which logs in upstream
// with the target's stored credentials, masks, blocks and audits.
func TestPostgresThroughBastion(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	pg := pgtest.Start(t, pgtest.Options{})
	pg.MustSQL(t, `CREATE TABLE customers (id int primary key, name text, email text, ssn text, note text);
		INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', '123-45-6789', 'card 4242 4242 4242 4242');
		GRANT ALL ON customers TO `+pgtest.ScramUser+`;`)
	pwFile := filepath.Join(t.TempDir(), "orders.pw")
	os.WriteFile(pwFile, []byte(pgtest.ScramPassword+"\n"), 0o600)
	idp := harness.StartIdP(t)
	srv := harness.StartServer(t, harness.ServerOptions{IdP: idp, Policy: postgresPolicy, Targets: []harness.Target{{
		Name: "orders-db", Kind: "postgres", Address: pg.Addr,
		Extra: "    database: " + pgtest.Database + "\n    credentials: {user: " + pgtest.ScramUser + ", password_file: " + pwFile + "}\n    tls: disable\n",
	}}})
	bob := srv.Login(t, "bob") // dba
	lport := harness.FreePort(t)
	sshTunnel(t, bob.SSHConfig, lport, "orders-db:5432")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	psql := func(sql string) pgtest.Result {
		t.Helper()
		r, err := pgtest.Psql(ctx, lport, "bob", "ignored", "", "-A", "-t", "-c", sql)
		if err != nil {
			t.Fatalf("psql: %v", err)
		}
		return r
	}
	// No database password is asked of the user; masked values never show.
	r := psql("SELECT name, email, ssn, note FROM customers")
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "Ada") {
		t.Fatalf("select: %+v", r)
	}
	for _, secret := range []string{"ada@example.com", "123-45-6789", "4242 4242 4242 4242"} {
		if strings.Contains(r.Stdout, secret) {
			t.Errorf("masked value %q leaked: %q", secret, r.Stdout)
		}
	}
	// Blocked statements are refused with 42501 and nothing runs.
	for _, sql := range []string{"DROP TABLE customers", "TRUNCATE customers", "DELETE FROM customers", "select 1; /* x */ DeLeTe FROM customers"} {
		r := psql(sql)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "jumpgate") {
			t.Errorf("%q not refused: %+v", sql, r)
		}
	}
	if n := strings.TrimSpace(pg.MustSQL(t, "SELECT count(*) FROM customers")); n != "1" {
		t.Fatalf("data changed: %s rows", n)
	}
	events := srv.MustJG(t, "audit", "list", "--json", "--type", "sql.")
	for _, typ := range []string{"sql.query", "sql.blocked"} {
		if !strings.Contains(events, `"`+typ+`"`) {
			t.Errorf("no %s event", typ)
		}
	}
	if strings.Contains(srv.Proc.Out.String(), pgtest.ScramPassword) {
		t.Fatal("the database password was logged")
	}
}
