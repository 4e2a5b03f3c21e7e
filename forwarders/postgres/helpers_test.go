package postgres

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/storage/boltstore"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

const testPolicy = `
roles:
  - name: dba
    groups: [dba]
    targets: {names: [orders-db]}
    sql:
      block: [drop, truncate, alter_role, delete_without_where, update_without_where, copy_program]
      review: [ddl]
    mask:
      columns: ["*.ssn", "customers.email", "*.card_number"]
      patterns: [credit_card, email, us_ssn]
  - name: plain
    groups: [plain]
    targets: {names: [orders-db]}
requests:
  approvers: [{groups: [leads]}]
`

const seedSQL = `
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text, card_number text, note text, score int8);
INSERT INTO customers VALUES
 (1, 'Alice', 'alice@example.com', '123-45-6789', '4242-4242-4242-4242', 'call 078-05-1120 or bob@corp.example', 5),
 (2, 'Bob', 'bob@example.org', '987-65-4321', '5555555555554444', 'card 4111 1111 1111 1111', 7);
CREATE TABLE orders (id int, customer int, total numeric);
INSERT INTO orders SELECT g, 1 + g % 2, g * 1.5 FROM generate_series(1, 100) g;
`

// secrets are values that must never reach a masked user.
var secrets = []string{"alice@example.com", "123-45-6789", "4242-4242-4242-4242", "987-65-4321", "5555555555554444",
	"bob@example.org", "078-05-1120", "bob@corp.example", "4111 1111 1111 1111"}

type env struct {
	pg     *pgtest.Server
	addr   string
	fwd    *Forwarder
	store  *boltstore.Store
	audit  *audit.Log
	queue  *approvals.Queue
	policy *policy.Store
}

func newEnv(t *testing.T, groups []string, mutate func(*config.Target, *Config)) *env {
	t.Helper()
	pg := pgtest.Start(t, pgtest.Options{TLS: true})
	pg.MustSQL(t, "SET ROLE "+pgtest.ScramUser+";"+seedSQL)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(pgtest.ScramPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(dir, "jg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ps := policy.Static(p)
	al := audit.New(st, nil, slog.Default())
	q := &approvals.Queue{Store: st, Audit: al, Policy: ps, Poll: 50 * time.Millisecond}
	tgt := config.Target{Name: "orders-db", Kind: config.KindPostgres, Address: pg.Addr, Database: pgtest.Database,
		Credentials: config.Credentials{User: pgtest.ScramUser, PasswordFile: pw}, TLS: "require"}
	cfg := Config{Policy: ps, Audit: al, Approvals: q, HoldTimeout: time.Minute, StartupTimeout: 5 * time.Second}
	if mutate != nil {
		mutate(&tgt, &cfg)
	}
	f := New(cfg)
	t.Cleanup(f.Close)
	e := &env{pg: pg, fwd: f, store: st, audit: al, queue: q, policy: ps}
	e.addr = serve(t, f, forwarders.Session{ID: "s-test", User: "dana", Groups: groups, Source: "127.0.0.1"}, tgt)
	return e
}

// serve runs f on a loopback listener until the test ends.
func serve(t testing.TB, f *Forwarder, s forwarders.Session, tgt config.Target) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close) // after the sessions below have ended
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = f.Serve(ctx, c.(*net.TCPConn), s, tgt)
			}()
		}
	}()
	t.Cleanup(func() { cancel(); l.Close(); wg.Wait() })
	return l.Addr().String()
}

func (e *env) psql(t *testing.T, stdin string, args ...string) pgtest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := pgtest.Psql(ctx, e.addr, "whoever", "anydb", stdin, args...)
	if err != nil {
		t.Fatalf("psql: %v", err)
	}
	return r
}

func (e *env) events(t *testing.T, typ string) []audit.Event {
	t.Helper()
	recs, err := e.store.AuditRange(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	for _, r := range recs {
		ev, err := audit.CheckLine(r.JSON)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func noSecrets(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("%s leaked %q:\n%s", what, s, out)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error %v)", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = errors.New
var _ = storage.KindSQL
