package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/test/harness"
)

// failingAudit is the real audit log until fail is set; then every write
// fails as a full disk would.
type failingAudit struct {
	*audit.Log
	fail atomic.Bool
}

func (f *failingAudit) Emit(ctx context.Context, e audit.Event) (audit.Event, error) {
	if f.fail.Load() {
		return e, fmt.Errorf("%w: no space left on device", audit.ErrWrite)
	}
	return f.Log.Emit(ctx, e)
}

func (f *failingAudit) EmitBatch(ctx context.Context, events []audit.Event) ([]audit.Event, error) {
	if f.fail.Load() {
		return nil, fmt.Errorf("%w: no space left on device", audit.ErrWrite)
	}
	return f.Log.EmitBatch(ctx, events)
}

// TestAuditFailureClosesSessions: when the group commit of sql.query
// events fails, every session that had events in it is closed with SQLSTATE
// 58000 and runs nothing more, and the events committed before the failure
// stay in a chain that verifies.
func TestAuditFailureClosesSessions(t *testing.T) {
	var fa *failingAudit
	logs := &harness.SyncBuffer{}
	e := newEnv(t, []string{"dba"}, func(_ *config.Target, c *Config) {
		fa = &failingAudit{Log: c.Audit.(*audit.Log)}
		c.Audit = fa
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx := context.Background()
	host, port, _ := strings.Cut(e.addr, ":")
	connect := func() *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, "host="+host+" port="+port+" user=x dbname=y sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	a, b := connect(), connect()
	for _, c := range []*pgconn.PgConn{a, b} {
		if _, err := c.Exec(ctx, "SELECT count(*) FROM orders").ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the first statements' events", func() (bool, error) { return len(e.events(t, "sql.query")) == 2, nil })

	fa.fail.Store(true)
	for name, c := range map[string]*pgconn.PgConn{"a": a, "b": b} {
		// The statement that fills the failing commit runs (its result was
		// sent before the commit); the session is then closed.
		_, _ = c.Exec(ctx, "INSERT INTO orders VALUES (1000, 1, 1)").ReadAll()
		var last error
		waitFor(t, "session "+name+" closed", func() (bool, error) {
			_, last = c.Exec(ctx, "SELECT 1").ReadAll()
			return last != nil, nil
		})
		var pe *pgconn.PgError
		if !errors.As(last, &pe) || pe.Code != "58000" {
			if !c.IsClosed() {
				t.Fatalf("session %s: %v, want SQLSTATE 58000 and a closed connection", name, last)
			}
		}
		if _, err := c.Exec(ctx, "DELETE FROM orders WHERE id = 1").ReadAll(); err == nil {
			t.Fatalf("session %s ran a statement after its audit failed", name)
		}
	}
	if out := e.pg.MustSQL(t, "SELECT count(*) FROM orders WHERE id = 1"); strings.TrimSpace(out) != "1" {
		t.Fatalf("a statement after the failure changed data: %q", out)
	}

	// The statements whose events were lost are in the server log.
	if out := logs.String(); !strings.Contains(out, "audit event lost") || !strings.Contains(out, "INSERT INTO orders") {
		t.Errorf("server log does not name the lost statements:\n%s", out)
	}
	fa.fail.Store(false)
	if n, err := audit.Verify(ctx, e.store); err != nil || n < 2 {
		t.Fatalf("chain after the failure: %d events, %v", n, err)
	}
}

// TestStatementsAfterCloseAreAudited: a session still running when the
// forwarder is closed (the server's shutdown grace ran out) keeps
// auditing: its events are written without the shared queue.
func TestStatementsAfterCloseAreAudited(t *testing.T) {
	e := newEnv(t, []string{"dba"}, nil)
	ctx := context.Background()
	host, port, _ := strings.Cut(e.addr, ":")
	c, err := pgconn.Connect(ctx, "host="+host+" port="+port+" user=x dbname=y sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "SELECT 1 AS before_close").ReadAll(); err != nil {
		t.Fatal(err)
	}
	e.fwd.Close()
	if _, err := c.Exec(ctx, "SELECT 2 AS after_close").ReadAll(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both statements audited", func() (bool, error) {
		var n int
		for _, ev := range e.events(t, "sql.query") {
			if txt, _ := ev.Details["text"].(string); strings.Contains(txt, "before_close") || strings.Contains(txt, "after_close") {
				n++
			}
		}
		return n == 2, nil
	})
}
