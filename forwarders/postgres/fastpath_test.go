package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

// shapeMaskRef is shapeMask rune by rune, as it was before its ASCII path.
func shapeMaskRef(v []byte) []byte {
	var out []byte
	for len(v) > 0 {
		r, n := utf8.DecodeRune(v)
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			out = append(out, '*')
		} else {
			out = append(out, v[:n]...)
		}
		v = v[n:]
	}
	return out
}

func TestShapeMask(t *testing.T) {
	for _, v := range []string{"", "123-45-6789", "alice@example.com", "Zoë Ünal ٣٤", "\xff\xfe ok", "tab\there", "a_b (c) [9]"} {
		if got, want := string(shapeMask([]byte(v))), string(shapeMaskRef([]byte(v))); got != want {
			t.Errorf("shapeMask(%q) = %q, want %q", v, got, want)
		}
		if got, want := string(appendShapeMask([]byte("x"), []byte(v))), "x"+string(shapeMaskRef([]byte(v))); got != want {
			t.Errorf("appendShapeMask(%q) = %q, want %q", v, got, want)
		}
	}
}

// dataRow encodes a DataRow body; nil is NULL.
func dataRow(vals ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// TestRewriteRowInPlace checks that masking whole text values straight into
// the row gives what maskValue gives.
func TestRewriteRowInPlace(t *testing.T) {
	cols := []colMask{
		{whole: true, typ: oidText},
		{whole: true, typ: oidVarchar, format: 1},
		{whole: true, typ: oidJSONB},
		{whole: true, typ: oidInt4},
		{patterns: true, typ: oidText},
		{whole: true, typ: oidText},
	}
	p := &rowPlan{cols: cols, det: newDetectors([]string{"email"})}
	row := dataRow([]byte("Zoë 123"), []byte("4242-4242"), []byte(`{"a":1}`), []byte("77"), []byte("mail bob@corp.example"), nil, []byte("extra"))
	got, err := p.rewriteRow(nil, row)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i, v := range [][]byte{[]byte("Zoë 123"), []byte("4242-4242"), []byte(`{"a":1}`), []byte("77"), []byte("mail bob@corp.example"), nil, []byte("extra")} {
		c := colMask{whole: true}
		if i < len(cols) {
			c = cols[i]
		}
		if v == nil {
			want = append(want, nil)
			continue
		}
		m, null, _ := p.maskValue(c, v)
		if null {
			m = nil
		}
		want = append(want, m)
	}
	if string(got) != string(dataRow(want...)) {
		t.Fatalf("rewriteRow = %q, want %q", got, dataRow(want...))
	}
}

func TestPendingQueue(t *testing.T) {
	ss := &session{}
	next, want := 0, 0
	for round := 0; round < 50; round++ {
		// Push more than is popped, then drain: the array is compacted and
		// reused, and the order is kept.
		for i := 0; i < 7+round%5; i++ {
			ss.push(&pending{idx: next})
			next++
		}
		for i := 0; i < 3; i++ {
			if p := ss.pop(); p == nil || p.idx != want {
				t.Fatalf("round %d: pop = %+v, want idx %d", round, p, want)
			}
			want++
		}
	}
	for p := ss.pop(); p != nil; p = ss.pop() {
		if p.idx != want {
			t.Fatalf("drain: idx %d, want %d", p.idx, want)
		}
		want++
	}
	if want != next || ss.front() != nil {
		t.Fatalf("popped %d of %d", want, next)
	}
	// At most ~300 were waiting at once: compaction keeps the array near
	// that, and an emptied queue starts again at its beginning.
	if c := cap(ss.queue); c > 1024 {
		t.Fatalf("queue array grew to %d", c)
	}
	c := cap(ss.queue)
	ss.push(&pending{kind: 'E'})
	if len(ss.queue) != 1 || cap(ss.queue) != c {
		t.Fatalf("emptied queue not reused: len %d cap %d (was %d)", len(ss.queue), cap(ss.queue), c)
	}
	ss.push(&pending{kind: 'E'})
	ss.push(pendingSync)
	ss.push(&pending{kind: 'E'})
	ss.popUntilSync()
	if p := ss.pop(); p != pendingSync {
		t.Fatalf("popUntilSync left %+v at the front", p)
	}
}

func testSession(t *testing.T, groups ...string) *session {
	t.Helper()
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	f := New(Config{Policy: policy.Static(p), Audit: nopAudit{}})
	return &session{f: f, ctx: context.Background(), s: sessionFor(groups[0]), t: config.Target{Name: "orders-db"},
		pt: policy.Target{Name: "orders-db", Kind: "postgres"}, id: policy.Identity{User: "tester", Groups: groups}}
}

// rowDesc encodes a RowDescription of computed text columns.
func rowDesc(names ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(names)))
	for _, n := range names {
		b = append(append(b, n...), 0)
		b = binary.BigEndian.AppendUint32(b, 0) // table
		b = binary.BigEndian.AppendUint16(b, 0) // attnum
		b = binary.BigEndian.AppendUint32(b, oidText)
		b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0)
	}
	return b
}

// TestPlanReuse checks when the plan of a simple-protocol result is reused.
func TestPlanReuse(t *testing.T) {
	ss := testSession(t, "dba")
	now := time.Unix(1000, 0)
	plain := &Statement{Columns: []string{"name"}}
	derived := &Statement{Columns: []string{"ssn"}}
	desc := rowDesc("a", "b")
	p1, err := ss.planForDesc(desc, plain, now)
	if err != nil || p1 == nil || p1.cols[0].whole {
		t.Fatalf("plan %+v, %v", p1, err)
	}
	if p2, _ := ss.planForDesc(desc, plain, now.Add(time.Second)); p2 != p1 {
		t.Fatal("same description and statement shape: plan not reused")
	}
	p3, _ := ss.planForDesc(desc, derived, now)
	if p3 == p1 || !p3.cols[0].whole {
		t.Fatalf("a statement naming a masked column got the unmasked plan: %+v", p3)
	}
	if p4, _ := ss.planForDesc(rowDesc("a"), derived, now); len(p4.cols) != 1 {
		t.Fatalf("another description reused the plan: %+v", p4)
	}
	ss.lastPlan.plan = nil
	p5, _ := ss.planForDesc(desc, plain, now)
	if p6, _ := ss.planForDesc(desc, plain, now.Add(ss.f.cfg.CatalogTTL)); p6 == p5 {
		t.Fatal("plan reused past the catalog TTL")
	}
	if _, err := ss.planForDesc([]byte{0, 1, 'x'}, plain, now); err == nil {
		t.Fatal("malformed description accepted")
	}
	plainSS := testSession(t, "plain")
	if p, _ := plainSS.planForDesc(desc, derived, now); p != nil {
		t.Fatalf("no masks, yet a plan: %+v", p)
	}
}

// TestEventFromCache checks that an event built from a cached statement
// (with its boxed values) has the details one built from the parser has.
func TestEventFromCache(t *testing.T) {
	for _, logLiterals := range []bool{false, true} {
		ss := testSession(t, "plain")
		ss.f.cfg.LogLiterals = logLiterals
		for _, q := range []string{"SELECT abalance FROM pgbench_accounts WHERE aid = 123;", "SELECT $1::int", "SELECT 1; SELECT 'x'"} {
			fresh, err := Classify(q, nil)
			if err != nil {
				t.Fatal(err)
			}
			c := newStmtCache(16, 1<<20)
			c.classify(q, nil, logLiterals)
			other := strings.Replace(q, "123", "4567", 1)
			for _, text := range []string{q, other} {
				cached, ok := c.get(text)
				if !ok {
					t.Fatalf("%q: not cached", text)
				}
				if text != q {
					if fresh, err = Classify(text, nil); err != nil {
						t.Fatal(err)
					}
				}
				for i := range cached {
					for _, proto := range []string{"simple", "extended"} {
						rec := auditRec{protocol: proto, n: 3, rows: 1, tag: ss.tagOf([]byte("SELECT 1\x00"))}
						rec.st = &cached[i]
						got := ss.event(rec)
						rec.st = &fresh[i]
						want := ss.event(rec)
						if !reflect.DeepEqual(got.Details, want.Details) {
							t.Errorf("%q (literals %v, %s): cached event %v, parsed %v", text, logLiterals, proto, got.Details, want.Details)
						}
					}
				}
			}
		}
	}
}

// recAudit records events.
type recAudit struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (r *recAudit) Emit(_ context.Context, e audit.Event) (audit.Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
	return e, nil
}

func (r *recAudit) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

// TestAuditBatches runs query strings of many statements, whose answers
// arrive in few reads, so that more statements finish between two flushes
// than one batch holds: each still gets its event, numbered in order.
func TestAuditBatches(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ra := &recAudit{}
	tgt := config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database, Credentials: config.Credentials{User: pgtest.TrustUser}, TLS: "disable"}
	addr := serve(t, New(Config{Policy: policy.Static(p), Audit: ra}), sessionFor("plain"), tgt)
	c := rawConnect(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const per, rounds = 3 * auditBatch / 2, 3
	for r := 0; r < rounds; r++ {
		var q []string
		for i := 0; i < per; i++ {
			q = append(q, fmt.Sprintf("SELECT %d", i))
		}
		if _, err := c.Exec(ctx, strings.Join(q, "; ")).ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every sql.query event", func() (bool, error) { return ra.count() >= per*rounds, nil })
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if len(ra.evs) != per*rounds {
		t.Fatalf("%d events for %d statements", len(ra.evs), per*rounds)
	}
	seen := map[int64]bool{}
	for _, e := range ra.evs {
		n := e.Details["statement"].(int64)
		if seen[n] || n < 1 || n > per*rounds || e.Details["tag"] != "SELECT 1" || e.Details["rows"] != int64(1) {
			t.Fatalf("event %+v", e.Details)
		}
		seen[n] = true
	}
}

// TestPreparedPlanReuse executes one prepared statement repeatedly, with
// text and binary results: every execution is masked in its own format.
func TestPreparedPlanReuse(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	pg.MustSQL(t, "SET ROLE "+pgtest.ScramUser+";"+seedSQL)
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	tgt := config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database, Credentials: config.Credentials{User: pgtest.TrustUser}, TLS: "disable"}
	f := New(Config{Policy: policy.Static(p), Audit: nopAudit{}})
	t.Cleanup(f.Close)
	c := rawConnect(t, serve(t, f, sessionFor("dba"), tgt))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sd, err := c.Prepare(ctx, "s1", "SELECT id, ssn, name FROM customers WHERE id = $1", nil)
	if err != nil {
		t.Fatal(err)
	}
	// ExecStatement sends no Describe: the rows are placed by the
	// statement's own description, as pgx's statement cache and pgbench -M
	// prepared do.
	for i, formats := range [][]int16{nil, nil, {1}, {1}, {0, 1, 0}, nil} {
		res := c.ExecStatement(ctx, sd, [][]byte{[]byte("1")}, nil, formats).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		row := res.Rows[0]
		if got := string(row[1]); got != "***-**-****" {
			t.Errorf("execution %d (formats %v): ssn %q", i, formats, got)
		}
		if got := string(row[2]); got != "Alice" {
			t.Errorf("execution %d (formats %v): name %q", i, formats, got)
		}
		wantID := "1"
		if len(formats) == 1 {
			wantID = "\x00\x00\x00\x01"
		}
		if got := string(row[0]); got != wantID {
			t.Errorf("execution %d (formats %v): id %q", i, formats, got)
		}
	}
}
