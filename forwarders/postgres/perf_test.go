package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage/boltstore"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

func rawConnect(t *testing.T, addr string) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	host, port, _ := strings.Cut(addr, ":")
	c, err := pgconn.Connect(ctx, "host="+host+" port="+port+" user=whoever dbname=any sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestPolicyReloadMidSession checks that a session's cached rules follow a
// policy reload: the next statement is judged and masked by the new policy.
func TestPolicyReloadMidSession(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	pg.MustSQL(t, "SET ROLE "+pgtest.ScramUser+";"+seedSQL)
	file := filepath.Join(t.TempDir(), "policy.yaml")
	open := "roles:\n  - name: plain\n    groups: [plain]\n    targets: {names: [orders-db]}\n"
	closed := open + "    sql: {block: [delete]}\n    mask: {columns: [\"customers.ssn\"]}\n"
	if err := os.WriteFile(file, []byte(open), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := policy.NewStore(file)
	if err != nil {
		t.Fatal(err)
	}
	tgt := config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database, Credentials: config.Credentials{User: pgtest.TrustUser}, TLS: "disable"}
	addr := serve(t, New(Config{Policy: ps, Audit: nopAudit{}}), sessionFor("plain"), tgt)
	c := rawConnect(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	read := func() string {
		res, err := c.Exec(ctx, "SELECT ssn FROM customers WHERE id = 1").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return string(res[0].Rows[0][0])
	}
	del := "DELETE FROM orders WHERE id = 1"
	if got := read(); got != "123-45-6789" {
		t.Fatalf("before reload: %q", got)
	}
	if _, err := c.Exec(ctx, del).ReadAll(); err != nil {
		t.Fatalf("delete before reload: %v", err)
	}
	if err := os.WriteFile(file, []byte(closed), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := ps.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if got := read(); got == "123-45-6789" {
		t.Fatalf("after reload the column is not masked: %q", got)
	}
	_, err = c.Exec(ctx, del).ReadAll()
	if err == nil || !strings.Contains(err.Error(), "blocked") {
		t.Fatalf("delete after reload: %v", err)
	}
}

// TestAuditEveryStatement runs many statements in one session against a
// real boltstore audit log: every one has its sql.query event, numbered,
// with the literal-free text, and the chain verifies.
func TestAuditEveryStatement(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "jg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	tgt := config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database, Credentials: config.Credentials{User: pgtest.TrustUser}, TLS: "disable"}
	addr := serve(t, New(Config{Policy: policy.Static(p), Audit: audit.New(st, nil, slog.Default())}), sessionFor("plain"), tgt)
	c := rawConnect(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 300
	for i := 0; i < n; i++ {
		if _, err := c.Exec(ctx, fmt.Sprintf("SELECT %d AS secret_%d", 1000+i, i%3)).ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	var evs []audit.Event
	waitFor(t, "every sql.query event", func() (bool, error) {
		recs, err := st.AuditRange(context.Background(), 0, 0)
		if err != nil {
			return false, err
		}
		evs = evs[:0]
		for _, r := range recs {
			e, err := audit.CheckLine(r.JSON)
			if err != nil {
				return false, err
			}
			if e.Type == audit.SQLQuery {
				evs = append(evs, e)
			}
		}
		return len(evs) >= n, nil
	})
	if len(evs) != n {
		t.Fatalf("%d sql.query events for %d statements", len(evs), n)
	}
	seen := map[int64]bool{}
	for _, e := range evs {
		num, err := e.Details["statement"].(json.Number).Int64()
		if err != nil || num < 1 || num > n || seen[num] {
			t.Fatalf("statement number %v (%v) in %+v", e.Details["statement"], err, e.Details)
		}
		seen[num] = true
		text, _ := e.Details["text"].(string)
		if !strings.HasPrefix(text, "SELECT $1 AS secret_") || e.Details["fingerprint"] == nil {
			t.Fatalf("event details: %+v", e.Details)
		}
	}
	if cnt, err := audit.Verify(ctx, st); err != nil || cnt < n {
		t.Fatalf("chain: %d events, %v", cnt, err)
	}
}
