package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jumpgate/jumpgate/policy"
)

// sqlDecider is the dba role of testPolicy on orders-db.
func sqlDecider(t *testing.T) policy.SQLDecider {
	t.Helper()
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return p.SQLRules(policy.Identity{User: "alice", Groups: []string{"dba"}}, policy.Target{Name: "orders-db"})
}

func decide(d policy.SQLDecider, q string) (policy.Decision, []Statement) {
	sts, _ := Classify(q, nil)
	ss := make([]policy.SQLStatement, len(sts))
	for i := range sts {
		ss[i] = sts[i].SQLStatement
	}
	return d.DecideAll(ss), sts
}

// TestSQLBypassAttempts tries to get a blocked statement (testPolicy's dba
// role blocks drop, truncate, alter_role, delete/update without WHERE and
// COPY ... PROGRAM) past the classifier. Rows with a limit are documented
// behaviour (README "What SQL filtering can and cannot catch").
func TestSQLBypassAttempts(t *testing.T) {
	d := sqlDecider(t)
	tests := []struct {
		name, q string
		want    policy.Action
		limit   string
	}{
		// Comments, case, whitespace.
		{"nested block comment", "/* /* nested */ still comment */ DROP TABLE customers", policy.ActionBlock, ""},
		{"line comment before", "-- x\nDROP TABLE customers", policy.ActionBlock, ""},
		{"comment inside keyword gap", "DROP/**/TABLE/**/customers", policy.ActionBlock, ""},
		{"tabs and form feed", "DROP\tTABLE\fcustomers", policy.ActionBlock, ""},
		{"mixed case and quoted name", `dRoP tAbLe "customers"`, policy.ActionBlock, ""},
		// Unicode.
		{"no-break space (not SQL whitespace)", "DROP\u00a0TABLE customers", policy.ActionBlock, ""},
		{"full-width letters", "ＤＲＯＰ TABLE customers", policy.ActionBlock, ""},
		{"U& escaped identifier", `DROP TABLE U&"cust\006fmers"`, policy.ActionBlock, ""},
		{"zero-width space", "TRUNC\u200bATE customers", policy.ActionBlock, ""},
		{"invalid UTF-8", "DROP TABLE \xff\xfe", policy.ActionBlock, ""},
		// The parser is C: a NUL ends its input. On the wire the forwarder
		// and the server both read a Query up to its first NUL; a text
		// handed to Classify with a NUL inside is opaque (FuzzClassify).
		{"NUL byte hides what follows", "SELECT 1\x00; DROP TABLE customers", policy.ActionBlock, ""},
		// Multi-statement strings and literals that look like statements.
		{"empty statements around", "SELECT 1;;;DROP TABLE customers", policy.ActionBlock, ""},
		{"drop after a harmless statement", "SELECT 1; TRUNCATE customers", policy.ActionBlock, ""},
		{"statement inside a string", "SELECT 'a'';DROP TABLE customers;--'", policy.ActionAllow, ""},
		{"statement inside dollar quotes", "SELECT $$;DROP TABLE customers;$$", policy.ActionAllow, ""},
		{"statement inside E string", `SELECT E'\';DROP TABLE customers;--'`, policy.ActionAllow, ""},
		// Transactions and savepoints.
		{"inside a transaction", "BEGIN; DROP TABLE customers; COMMIT", policy.ActionBlock, ""},
		{"inside a savepoint", "BEGIN; SAVEPOINT s; DROP TABLE customers; ROLLBACK TO SAVEPOINT s; COMMIT", policy.ActionBlock, ""},
		{"start transaction", "START TRANSACTION; TRUNCATE customers; COMMIT", policy.ActionBlock, ""},
		{"savepoint alone", "SAVEPOINT s", policy.ActionAllow, ""},
		// Writable CTEs.
		{"CTE update", "WITH x AS (UPDATE customers SET name='x' RETURNING 1) SELECT 1", policy.ActionBlock, ""},
		{"recursive CTE then delete", "WITH RECURSIVE x AS (SELECT 1) DELETE FROM customers", policy.ActionBlock, ""},
		{"CTE delete inside INSERT", "INSERT INTO orders WITH d AS (DELETE FROM customers RETURNING id) SELECT id, 1, 1 FROM d", policy.ActionBlock, ""},
		{"CTE delete inside CREATE TABLE AS", "CREATE TABLE x AS WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d", policy.ActionBlock, ""},
		{"DELETE USING without WHERE", "DELETE FROM customers USING orders", policy.ActionBlock, ""},
		{"UPDATE FROM without WHERE", "UPDATE customers SET name = 'x' FROM orders", policy.ActionBlock, ""},
		// DO blocks, functions, procedures, rules.
		{"DO block", "DO LANGUAGE plpgsql $$ BEGIN TRUNCATE customers; END $$", policy.ActionBlock, ""},
		{"DO with dynamic EXECUTE", "DO $$ BEGIN EXECUTE 'TRUNC' || 'ATE customers'; END $$", policy.ActionBlock, ""},
		{"function with dynamic EXECUTE", "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DROP TABLE ' || 'customers'; END $$", policy.ActionBlock, ""},
		{"procedure body", "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS $$ TRUNCATE customers $$", policy.ActionBlock, ""},
		{"function in another language", "CREATE FUNCTION f() RETURNS void LANGUAGE plperl AS $$ spi_exec_query('DROP TABLE customers') $$", policy.ActionBlock, ""},
		{"rule doing a delete", "CREATE RULE r AS ON SELECT TO customers DO INSTEAD DELETE FROM orders", policy.ActionBlock, ""},
		{"cursor over a delete", "DECLARE c CURSOR FOR DELETE FROM customers", policy.ActionBlock, ""},
		{"EXPLAIN ANALYZE runs the statement", "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM customers", policy.ActionBlock, ""},
		// Prepared statements.
		{"PREPARE of a blocked statement", "PREPARE p AS TRUNCATE customers", policy.ActionBlock, ""},
		{"PREPARE and EXECUTE in one string", "PREPARE p AS DELETE FROM customers; EXECUTE p", policy.ActionBlock, ""},
		{"EXECUTE of an unknown statement", "EXECUTE never_prepared_here", policy.ActionBlock, ""},
		// COPY ... PROGRAM.
		{"COPY FROM PROGRAM", "COPY customers FROM PROGRAM 'rm -rf /tmp/x'", policy.ActionBlock, ""},
		{"COPY TO PROGRAM lower case", "copy customers to program 'id'", policy.ActionBlock, ""},
		{"COPY query TO PROGRAM", "COPY (SELECT 1) TO PROGRAM 'id'", policy.ActionBlock, ""},
		// psql meta-commands reach the server only as the SQL they produce.
		{"psql meta-command text", `SELECT 'DROP TABLE customers' \gexec`, policy.ActionBlock, ""},
		{"shell escape text", `SELECT 1; \! rm -rf /`, policy.ActionBlock, ""},
		// Documented limits.
		{"calling an existing function", "SELECT f()", policy.ActionAllow,
			"functions and procedures that already exist are not inspected when called (only dangerous built-ins are)"},
		{"calling an existing procedure", "CALL p()", policy.ActionAllow,
			"functions and procedures that already exist are not inspected when called"},
		{"WHERE true", "DELETE FROM customers WHERE true", policy.ActionAllow,
			"delete_without_where guards against accidents: any WHERE counts, WHERE true included"},
		{"MERGE deletes matched rows", "MERGE INTO customers c USING orders o ON c.id = o.id WHEN MATCHED THEN DELETE", policy.ActionAllow,
			"MERGE's ON condition counts as a WHERE; a rule on delete blocks it (TestMergeIsADelete)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dec, sts := decide(d, tc.q)
			if dec.Action != tc.want {
				t.Fatalf("%q: %v (%s), want %v (limit %q); kinds %v", tc.q, dec.Action, dec.Reason, tc.want, tc.limit, kindsOf(sts))
			}
		})
	}
}

// TestMergeIsADelete: MERGE ... THEN DELETE carries the delete kind, so a
// rule on delete blocks it (it used to carry only merge and write).
func TestMergeIsADelete(t *testing.T) {
	p, err := policy.Parse([]byte("roles: [{name: r, groups: [g], targets: {names: [db]}, sql: {block: [delete, update]}}]"))
	if err != nil {
		t.Fatal(err)
	}
	d := p.SQLRules(policy.Identity{User: "u", Groups: []string{"g"}}, policy.Target{Name: "db"})
	for _, q := range []string{
		"MERGE INTO customers c USING orders o ON c.id = o.id WHEN MATCHED THEN DELETE",
		"MERGE INTO customers c USING orders o ON true WHEN MATCHED AND c.id > 0 THEN UPDATE SET name = 'x'",
		"WITH s AS (SELECT 1 AS id) MERGE INTO customers c USING s ON c.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
	} {
		if dec, sts := decide(d, q); dec.Action != policy.ActionBlock {
			t.Errorf("%q: %v; kinds %v", q, dec.Action, kindsOf(sts))
		}
	}
}

// TestSQLBypassThroughPsql sends the major bypass attempts through the real
// psql (including \gexec, psql variables and savepoints) and the extended
// protocol (a statement name re-used after Describe and Close), then checks
// that every row and table is still there.
func TestSQLBypassThroughPsql(t *testing.T) {
	e := newEnv(t, []string{"dba"}, nil)
	script := strings.Join([]string{
		`/* /* nested */ */ DROP TABLE customers;`,
		`DROP TABLE U&"cust\006fmers";`,
		`SELECT 'DROP TABLE customers' \gexec`,
		`SELECT 'TRUNCATE ' || 'orders' \gexec`,
		`\set wipe 'DELETE FROM customers'`,
		`:wipe;`,
		`BEGIN;`,
		`SAVEPOINT s;`,
		`TRUNCATE customers;`,
		`ROLLBACK TO SAVEPOINT s;`,
		`COMMIT;`,
		`WITH gone AS (DELETE FROM customers RETURNING *) INSERT INTO orders SELECT id, 1, 1 FROM gone;`,
		`DO $$ BEGIN EXECUTE 'TRUNC' || 'ATE customers'; END $$;`,
		`CREATE FUNCTION wipe() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DELETE FROM ' || 'customers'; END $$;`,
		`COPY customers FROM PROGRAM 'true';`,
		`PREPARE p AS SELECT 1;`,
		`DEALLOCATE p;`,
		`PREPARE p AS DELETE FROM customers;`,
		`EXECUTE p;`,
		`SELECT 'still-here' AS marker;`,
	}, "\n") + "\n"
	r := e.psql(t, script, "-A")
	if !strings.Contains(r.Stdout, "still-here") {
		t.Fatalf("the session did not go on: %+v", r)
	}
	if n := strings.Count(r.Stderr, "blocked by policy") + strings.Count(r.Stderr, "cannot inspect"); n < 12 {
		t.Errorf("%d refusals in stderr, want at least 12:\n%s", n, r.Stderr)
	}

	t.Run("statement name re-used after Describe and Close", func(t *testing.T) {
		c := pgxConnect(t, e.addr)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pc := c.PgConn()
		if _, err := pc.Prepare(ctx, "s1", "SELECT id FROM customers WHERE id = $1", nil); err != nil {
			t.Fatal(err)
		}
		p := pc.StartPipeline(ctx)
		p.SendDeallocate("s1")
		p.SendPrepare("s1", "DELETE FROM customers", nil)
		p.SendQueryPrepared("s1", nil, nil, nil)
		p.SendQueryParams("TRUNCATE customers", nil, nil, nil, nil)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		var refused bool
		for {
			res, err := p.GetResults()
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				refused = refused || pgErr.Code == "42501"
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if res == nil {
				break
			}
			if rr, ok := res.(*pgconn.ResultReader); ok {
				if _, err := rr.Close(); errors.As(err, &pgErr) {
					refused = refused || pgErr.Code == "42501"
				}
			}
		}
		_ = p.Close()
		if !refused {
			t.Error("no 42501 refusal in the pipeline")
		}
	})

	if got := strings.TrimSpace(e.pg.MustSQL(t, "SELECT count(*) FROM customers")); got != "2" {
		t.Fatalf("customers rows: %s", got)
	}
	if got := strings.TrimSpace(e.pg.MustSQL(t, "SELECT count(*) FROM orders")); got != "100" {
		t.Fatalf("orders rows: %s", got)
	}
	if got := strings.TrimSpace(e.pg.MustSQL(t, "SELECT count(*) FROM pg_proc WHERE proname = 'wipe'")); got != "0" {
		t.Fatalf("function created: %s", got)
	}
}
