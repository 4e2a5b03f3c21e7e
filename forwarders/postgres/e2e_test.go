package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

func pgxConnect(t *testing.T, addr string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	host, port, _ := strings.Cut(addr, ":")
	c, err := pgx.Connect(ctx, "host="+host+" port="+port+" user=whoever dbname=any sslmode=prefer")
	if err != nil {
		t.Fatalf("pgx connect through the forwarder: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestEndToEnd(t *testing.T) {
	e := newEnv(t, []string{"dba"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("psql normal query and masking (simple protocol)", func(t *testing.T) {
		r := e.psql(t, "", "-A", "-c", "SELECT id, name, email, ssn, card_number, note, ssn AS alias, upper(ssn) AS expr, row_to_json(c) AS j FROM customers c ORDER BY id")
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, "Alice") {
			t.Fatalf("psql: %+v", r)
		}
		noSecrets(t, "psql select", r.Stdout)
		if !strings.Contains(r.Stdout, "****-****-****-4242") && !strings.Contains(r.Stdout, "***-**-****") {
			t.Errorf("masked shape missing:\n%s", r.Stdout)
		}
		if !strings.Contains(r.Stdout, "(2 rows)") {
			t.Errorf("rows: %s", r.Stdout)
		}
	})
	t.Run("pgx extended protocol with statement cache", func(t *testing.T) {
		c := pgxConnect(t, e.addr)
		for i := 0; i < 3; i++ { // later runs skip Describe
			rows, err := c.Query(ctx, "SELECT name, email, ssn, card_number, note, score FROM customers WHERE id = $1", 1)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for rows.Next() {
				var n, em, ssn, cc, note string
				var score int64
				if err := rows.Scan(&n, &em, &ssn, &cc, &note, &score); err != nil {
					t.Fatal(err)
				}
				got = append(got, n, em, ssn, cc, note)
			}
			if rows.Err() != nil {
				t.Fatal(rows.Err())
			}
			if len(got) == 0 || got[0] != "Alice" {
				t.Fatalf("got %v", got)
			}
			noSecrets(t, "pgx", strings.Join(got, "|"))
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE total > $1", 10).Scan(&n); err != nil || n == 0 {
			t.Fatalf("count: %d %v", n, err)
		}
	})
	t.Run("copy to stdout is masked", func(t *testing.T) {
		for _, q := range []string{"COPY customers TO STDOUT", "COPY customers TO STDOUT WITH (FORMAT csv)", "COPY (SELECT ssn, note FROM customers) TO STDOUT"} {
			r := e.psql(t, "", "-c", q)
			if r.ExitCode != 0 || !strings.Contains(r.Stdout, "Alice") && !strings.Contains(q, "SELECT") {
				t.Fatalf("%s: %+v", q, r)
			}
			noSecrets(t, q, r.Stdout)
		}
	})
	t.Run("destructive statements are refused and data stays", func(t *testing.T) {
		for _, q := range []string{
			"DROP TABLE customers",
			"TRUNCATE customers",
			"DELETE FROM customers",
			"UPDATE customers SET name = 'x'",
			"/* harmless */ dRoP/**/TABLE customers",
			"SELECT 1; DROP TABLE customers",
			"WITH gone AS (DELETE FROM customers RETURNING *) SELECT count(*) FROM gone",
			"DO $$ BEGIN DROP TABLE customers; END $$",
			"DO $$ BEGIN EXECUTE 'DROP ' || 'TABLE customers'; END $$",
			"EXPLAIN ANALYZE DELETE FROM customers",
			"PREPARE wipe AS DELETE FROM customers",
			"ALTER ROLE scram_user SUPERUSER",
			"COPY customers FROM PROGRAM 'true'",
			"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'TRUNCATE customers'",
		} {
			r := e.psql(t, "", "-c", q)
			if r.ExitCode == 0 || !strings.Contains(r.Stderr, "jumpgate") {
				t.Errorf("%q was not refused: %+v", q, r)
			}
		}
		if got := strings.TrimSpace(e.pg.MustSQL(t, "SELECT count(*) FROM customers")); got != "2" {
			t.Fatalf("customers rows: %s", got)
		}
		if len(e.events(t, "sql.blocked")) < 10 {
			t.Errorf("sql.blocked events: %d", len(e.events(t, "sql.blocked")))
		}
	})
	t.Run("session goes on after a refusal; transaction semantics", func(t *testing.T) {
		r := e.psql(t, "SELECT 1 AS first;\nDROP TABLE customers;\nSELECT 2 AS second;\nBEGIN;\nTRUNCATE orders;\nSELECT 3;\nROLLBACK;\nSELECT 4 AS fourth;\n", "-A")
		if !strings.Contains(r.Stdout, "second") || !strings.Contains(r.Stdout, "fourth") {
			t.Fatalf("session did not go on: %+v", r)
		}
		if !strings.Contains(r.Stderr, "current transaction is aborted") {
			t.Errorf("refusal inside a transaction should abort it like a server error: %s", r.Stderr)
		}
		if !strings.Contains(r.Stderr, "42501") && !strings.Contains(r.Stderr, "blocked by policy") {
			t.Errorf("stderr: %s", r.Stderr)
		}
	})
	t.Run("pgx refused statements keep the driver in sync", func(t *testing.T) {
		c := pgxConnect(t, e.addr)
		for _, q := range []string{"DELETE FROM customers", "DROP TABLE orders", "EXECUTE wipe"} {
			_, err := c.Exec(ctx, q)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42501" {
				t.Errorf("%q: %v", q, err)
			}
			var one int
			if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("after %q: %v", q, err)
			}
		}
		// A pipelined batch: the refused statement aborts the batch like a server error.
		b := &pgx.Batch{}
		b.Queue("INSERT INTO orders VALUES (999, 1, 1)")
		b.Queue("DELETE FROM orders")
		if err := c.SendBatch(ctx, b).Close(); err == nil {
			t.Error("batch with a refused statement succeeded")
		}
		if got := strings.TrimSpace(e.pg.MustSQL(t, "SELECT count(*) FROM orders WHERE id = 999")); got != "0" {
			t.Errorf("the batch's implicit transaction was not rolled back: %s", got)
		}
	})
	t.Run("held statement runs after approval", func(t *testing.T) {
		done := make(chan pgtest.Result, 1)
		go func() {
			r, _ := pgtest.Psql(ctx, e.addr, "u", "d", "", "-c", "CREATE TABLE approved_table (a int)")
			done <- r
		}()
		var id string
		waitFor(t, "the hold", func() (bool, error) {
			rs, err := e.queue.List(ctx)
			for _, r := range rs {
				if r.Kind == storage.KindSQL && r.Status == storage.StatusPending && strings.Contains(r.What, "approved_table") {
					id = r.ID
					return true, nil
				}
			}
			return false, err
		})
		if _, err := e.queue.Decide(ctx, id, policy.Identity{User: "lead", Groups: []string{"leads"}}, true, "ok"); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.ExitCode != 0 {
			t.Fatalf("approved statement failed: %+v", r)
		}
		e.pg.MustSQL(t, "SELECT * FROM approved_table")
		if len(e.events(t, "sql.held")) == 0 {
			t.Error("no sql.held event")
		}
	})
	t.Run("denied statement does not run", func(t *testing.T) {
		done := make(chan pgtest.Result, 1)
		go func() {
			r, _ := pgtest.Psql(ctx, e.addr, "u", "d", "", "-c", "CREATE TABLE denied_table (a int)")
			done <- r
		}()
		var id string
		waitFor(t, "the hold", func() (bool, error) {
			rs, err := e.queue.List(ctx)
			for _, r := range rs {
				if r.Status == storage.StatusPending && strings.Contains(r.What, "denied_table") {
					id = r.ID
					return true, nil
				}
			}
			return false, err
		})
		if _, err := e.queue.Decide(ctx, id, policy.Identity{User: "lead", Groups: []string{"leads"}}, false, "no"); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.ExitCode == 0 || !strings.Contains(r.Stderr, "denied") {
			t.Fatalf("denied statement: %+v", r)
		}
		if out := e.pg.MustSQL(t, "SELECT to_regclass('denied_table') IS NULL"); strings.TrimSpace(out) != "t" {
			t.Fatal("denied table exists")
		}
	})
	t.Run("audit records statements", func(t *testing.T) {
		waitFor(t, "sql.query events", func() (bool, error) {
			for _, ev := range e.events(t, "sql.query") {
				if strings.Contains(ev.Details["text"].(string), "FROM customers") && ev.Details["fingerprint"] != nil && ev.Details["rows"] != nil {
					return !strings.Contains(ev.Details["text"].(string), "alice"), nil
				}
			}
			return false, nil
		})
	})
	t.Run("cancel request reaches upstream", func(t *testing.T) {
		host, port, _ := strings.Cut(e.addr, ":")
		c, err := pgconn.Connect(ctx, "host="+host+" port="+port+" user=x dbname=y sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		resCh := make(chan error, 1)
		go func() { resCh <- c.Exec(ctx, "SELECT pg_sleep(30)").Close() }()
		waitFor(t, "pg_sleep running", func() (bool, error) {
			out, err := e.pg.SuperSQL(pgtest.Database, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
			return strings.TrimSpace(out) == "1", err
		})
		if err := c.CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-resCh:
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "57014" {
				t.Fatalf("want query_canceled, got %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("cancel did not reach the upstream")
		}
	})
}

func TestLoginMethodsAndTLSModes(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{TLS: true})
	dir := t.TempDir()
	for _, tc := range []struct{ name, user, pw, tls, ca string }{
		{"scram prefer", pgtest.ScramUser, pgtest.ScramPassword, "prefer", ""},
		{"md5 disable", pgtest.MD5User, pgtest.MD5Password, "disable", ""},
		{"trust require", pgtest.TrustUser, "", "require", ""},
		{"scram verify-full", pgtest.ScramUser, pgtest.ScramPassword, "verify-full", pg.CAFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pwf := ""
			if tc.pw != "" {
				pwf = dir + "/" + tc.user
				if err := writeFile(pwf, tc.pw); err != nil {
					t.Fatal(err)
				}
			}
			p, _ := policy.Parse([]byte(testPolicy))
			f := New(Config{Policy: policy.Static(p), Audit: nopAudit{}})
			tgt := config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database,
				Credentials: config.Credentials{User: tc.user, PasswordFile: pwf}, TLS: tc.tls, CAFile: tc.ca}
			addr := serve(t, f, sessionFor("plain"), tgt)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := pgtest.Psql(ctx, addr, "x", "y", "", "-A", "-t", "-c", "SELECT current_user || ' ' || coalesce((SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()), '')")
			if err != nil || r.ExitCode != 0 {
				t.Fatalf("%v %+v", err, r)
			}
			wantSSL := tc.tls != "disable"
			if got := strings.TrimSpace(r.Stdout); got != tc.user+" "+map[bool]string{true: "true", false: "false"}[wantSSL] {
				t.Fatalf("got %q", got)
			}
			if strings.Contains(r.Stdout+r.Stderr, "secret-pw") {
				t.Fatal("password shown to the user")
			}
		})
	}
	t.Run("no access", func(t *testing.T) {
		p, _ := policy.Parse([]byte(testPolicy))
		f := New(Config{Policy: policy.Static(p), Audit: nopAudit{}})
		addr := serve(t, f, sessionFor("nobody"), config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Credentials: config.Credentials{User: pgtest.TrustUser}})
		r, _ := pgtest.Psql(context.Background(), addr, "x", "y", "", "-c", "SELECT 1")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "no access") {
			t.Fatalf("%+v", r)
		}
	})
}
