package postgres

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func TestTemplate(t *testing.T) {
	tests := []struct {
		name, q, want string
		runs          int
	}{
		{"pgbench -S", "SELECT abalance FROM pgbench_accounts WHERE aid = 123;", "SELECT abalance FROM pgbench_accounts WHERE aid = \x00;", 1},
		{"no digits", "SELECT now()", "SELECT now()", 0},
		{"digits in identifiers", "SELECT t1.a2 FROM t1", "SELECT t1.a2 FROM t1", 0},
		{"parameters", "SELECT $1, $22", "SELECT $1, $22", 0},
		{"decimal", "SELECT 1.5, .5, 5.", "SELECT 1.5, .5, 5.", 0},
		{"exponent and hex and underscores", "SELECT 1e5, 0x1F, 1_000, 0o7", "SELECT 1e5, 0x1F, 1_000, 0o7", 0},
		{"ten digits lex as numeric", "SELECT 1234567890, 123456789", "SELECT 1234567890, \x00", 1},
		{"string literal", "SELECT '12', 3", "SELECT '12', \x00", 1},
		{"quoted identifier", `SELECT "1" FROM t WHERE a = 2`, `SELECT "1" FROM t WHERE a = ` + "\x00", 1},
		{"line comment", "SELECT 1 -- 2\n", "SELECT \x00 -- 2\n", 1},
		{"block comment", "SELECT /* 7 */ 8", "SELECT /* 7 */ \x00", 1},
		{"operators around", "SELECT 1+2*3", "SELECT \x00+\x00*\x00", 3},
		{"non-ASCII neighbour", "SELECT é1, 1é", "SELECT é1, 1é", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, runs := template(tc.q)
			if got != tc.want || len(runs) != tc.runs {
				t.Fatalf("template(%q) = %q with %d runs, want %q with %d", tc.q, got, len(runs), tc.want, tc.runs)
			}
		})
	}
}

// cacheQueries are texts the cache must treat exactly like the parser,
// including adversarial ones.
var cacheQueries = []string{
	"SELECT abalance FROM pgbench_accounts WHERE aid = 123;",
	"SELECT aid, ssn, email, card_number FROM pgbench_accounts WHERE aid = 77;",
	"  SELECT 1 ;  ",
	"SELECT 1; DROP TABLE t; SELECT 22",
	"SELECT 1 /* 2 */ ; SELECT 3 -- 4\n; DELETE FROM t WHERE id = 5",
	"SELECT ';', 5 FROM t WHERE a = 'x; DROP TABLE t' AND b = 6",
	"SELECT 'DROP TABLE t', 1, \"select\" FROM t",
	"SELECT E'\\' 1', 2",
	"SELECT $$ 1 $$, 2",
	"SELECT $a1$ ; DROP TABLE t; $a1$, 3",
	"DO $$ BEGIN PERFORM 1; END $$",
	"DO $$ BEGIN IF 1 = 1 THEN DROP TABLE t; END IF; END $$",
	"EXPLAIN (ANALYZE 0) DELETE FROM t",
	"EXPLAIN (ANALYZE 1) DELETE FROM t",
	"EXPLAIN (ANALYZE true, COSTS 0) SELECT 1",
	"SELECT 1::float(10)",
	"SELECT 1::numeric(10, 2), '1'::varchar(5), now()::timestamp(3)",
	"SELECT * FROM t LIMIT 5 OFFSET 10",
	"SELECT * FROM t WHERE a = -5 AND b IN (1, 2, 3)",
	"UPDATE t SET a = 1 WHERE id = 2",
	"UPDATE t SET a = 1",
	"DELETE FROM t WHERE id = 7",
	"INSERT INTO t VALUES (1, 'a', 2.5)",
	"PREPARE p AS DELETE FROM t WHERE id = 3",
	"PREPARE p (int) AS SELECT $1 + 4",
	"COPY (SELECT 1, ssn FROM c) TO STDOUT",
	"COPY t FROM PROGRAM 'echo 1'",
	"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
	"CREATE ROLE r CONNECTION LIMIT 5",
	"ALTER ROLE r WITH SUPERUSER CONNECTION LIMIT 3",
	"SET statement_timeout = 5000",
	"SELECT set_config('role', 'x', false), 1",
	"SELECT row_to_json(c), 1 FROM customers c WHERE id = 2",
	"WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d LIMIT 2",
	"FETCH 5 FROM cur",
	"SELECT 1 FROM t1 JOIN t2 ON t1.a = t2.a WHERE t2.b > 10",
	"SELECT ARRAY[1, 2][1], x[3] FROM t",
	"VALUES (1), (2)",
	"SELECT 1 FROM generate_series(1, 10) g ORDER BY 1",
	"SELEKT 1",
}

// variant replaces each replaceable run of digits of q with another number.
func variant(q string, r *rand.Rand) string {
	_, runs := template(q)
	var b strings.Builder
	last := 0
	for _, run := range runs {
		b.WriteString(q[last:run.start])
		b.WriteString(strconv.Itoa(r.IntN(1_000_000_000)))
		last = run.end
	}
	b.WriteString(q[last:])
	return b.String()
}

func stripCached(sts []Statement) []Statement {
	out := slices.Clone(sts)
	for i := range out {
		out[i].fingerprint, out[i].normalized, out[i].boxes = "", "", nil
	}
	return out
}

// checkCached asserts the cache answers q exactly as the parser does; sc
// is reused across calls, as a session reuses its scratch.
func checkCached(t *testing.T, c *stmtCache, sc *tmplScratch, q string) {
	t.Helper()
	got, gerr := c.classifyWith(sc, q, nil, false)
	want, werr := Classify(q, nil)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("%q: cached error %v, parser error %v", q, gerr, werr)
	}
	if !reflect.DeepEqual(stripCached(got), want) {
		t.Fatalf("%q: cached classification differs:\n got %+v\nwant %+v", q, got, want)
	}
	for _, s := range got {
		if b := s.boxes; b != nil {
			if !reflect.DeepEqual(b.kinds, any(s.Kinds)) || b.text != nil && b.text != any(s.Text) ||
				b.fingerprint != nil && b.fingerprint != any(s.fingerprint) || b.normalized != nil && b.normalized != any(s.normalized) {
				t.Fatalf("%q: boxed values %+v differ from the statement %+v", q, *b, s)
			}
		}
		if s.fingerprint != "" {
			if fp, err := pg_query.Fingerprint(s.Text); err != nil || fp != s.fingerprint {
				t.Fatalf("%q: cached fingerprint %s, parser %s (%v)", s.Text, s.fingerprint, fp, err)
			}
		}
		if s.normalized != "" {
			if n, err := pg_query.Normalize(s.Text); err != nil || n != s.normalized {
				t.Fatalf("%q: cached normalized %q, parser %q (%v)", s.Text, s.normalized, n, err)
			}
		}
	}
}

func TestStmtCacheMatchesParser(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, q := range cacheQueries {
		t.Run(q, func(t *testing.T) {
			c := newStmtCache(100, 1<<20)
			sc := &tmplScratch{}
			checkCached(t, c, sc, q) // miss, stored if reusable
			checkCached(t, c, sc, q) // exact hit
			for i := 0; i < 20; i++ {
				checkCached(t, c, sc, variant(q, r))
			}
		})
	}
	t.Run("every query against every other through one cache", func(t *testing.T) {
		c := newStmtCache(1000, 1<<20)
		sc := &tmplScratch{}
		for i := 0; i < 3; i++ {
			for _, q := range cacheQueries {
				checkCached(t, c, sc, variant(q, r))
			}
		}
	})
}

func TestStmtCacheAdversarial(t *testing.T) {
	classifyVia := func(c *stmtCache, q string) []Statement {
		sts, _ := c.classify(q, nil, false)
		return sts
	}
	kinds := func(sts []Statement) []string { return kindsOf(sts) }
	t.Run("option values are not abstracted", func(t *testing.T) {
		c := newStmtCache(10, 1<<20)
		classifyVia(c, "EXPLAIN (ANALYZE 0) DELETE FROM t")
		if k := kinds(classifyVia(c, "EXPLAIN (ANALYZE 1) DELETE FROM t")); !slices.Contains(k, "explain_analyze") {
			t.Fatalf("ANALYZE 1 after ANALYZE 0: %v", k)
		}
	})
	t.Run("a parse error is not hidden by a cached twin", func(t *testing.T) {
		c := newStmtCache(10, 1<<20)
		classifyVia(c, "SELECT 1::float(10)")
		if sts, err := c.classify("SELECT 1::float(100)", nil, false); err == nil || !sts[0].Opaque {
			t.Fatalf("float(100) after float(10): %+v %v", sts, err)
		}
	})
	t.Run("digits inside dollar quotes", func(t *testing.T) {
		c := newStmtCache(10, 1<<20)
		classifyVia(c, "SELECT $x$ 1 $x$")
		if len(c.m) != 0 {
			t.Fatalf("a digit inside a dollar-quoted string was abstracted: %d entries", len(c.m))
		}
		classifyVia(c, "DO $$ BEGIN PERFORM 1; END $$")
		if k := kinds(classifyVia(c, "DO $$ BEGIN PERFORM 2; END $$")); slices.Contains(k, "drop") {
			t.Fatalf("%v", k)
		}
	})
	t.Run("semicolons in literals and comments keep statement texts", func(t *testing.T) {
		c := newStmtCache(10, 1<<20)
		classifyVia(c, "SELECT ';' , 1 /* ; */ ; SELECT 2")
		sts := classifyVia(c, "SELECT ';' , 12345 /* ; */ ; SELECT 67")
		if len(sts) != 2 || sts[0].Text != "SELECT ';' , 12345 /* ; */" || sts[1].Text != "SELECT 67" {
			t.Fatalf("%+v", sts)
		}
	})
	t.Run("EXECUTE follows the session's prepared statements", func(t *testing.T) {
		c := newStmtCache(10, 1<<20)
		safe := func(string) ([]string, bool) { return []string{"select"}, true }
		wipe := func(string) ([]string, bool) { return []string{"delete", "delete_without_where", "write"}, true }
		c.classify("EXECUTE p(1)", safe, false)
		sts, _ := c.classify("EXECUTE p(1)", wipe, false)
		if !slices.Contains(kinds(sts), "delete_without_where") {
			t.Fatalf("EXECUTE served from the cache: %v", kinds(sts))
		}
		if len(c.m) != 0 {
			t.Fatal("EXECUTE was cached")
		}
	})
	t.Run("numeric and integer constants differ", func(t *testing.T) {
		c := newStmtCache(10, 1<<20)
		classifyVia(c, "SELECT 1")
		checkCached(t, c, &tmplScratch{}, "SELECT 9999999999")
		checkCached(t, c, &tmplScratch{}, "SELECT 1.5")
	})
}

func TestStmtCacheBounds(t *testing.T) {
	c := newStmtCache(8, 1<<20)
	for i := 0; i < 20; i++ {
		c.classify(fmt.Sprintf("SELECT c%d FROM t", i), nil, false)
	}
	if len(c.m) != 8 {
		t.Fatalf("%d entries, want 8", len(c.m))
	}
	if _, ok := c.get("SELECT c19 FROM t"); !ok {
		t.Fatal("most recent entry evicted")
	}
	if _, ok := c.get("SELECT c0 FROM t"); ok {
		t.Fatal("oldest entry kept")
	}
	c.get("SELECT c12 FROM t") // touch: now the newest
	for i := 20; i < 27; i++ {
		c.classify(fmt.Sprintf("SELECT c%d FROM t", i), nil, false)
	}
	if _, ok := c.get("SELECT c12 FROM t"); !ok {
		t.Fatal("recently used entry evicted")
	}
	small := newStmtCache(1000, 2000)
	for i := 0; i < 50; i++ {
		small.classify(fmt.Sprintf("SELECT c%d, '%s' FROM t", i, strings.Repeat("x", 100)), nil, false)
	}
	if small.bytes > 2000 || len(small.m) == 0 {
		t.Fatalf("byte bound: %d bytes in %d entries", small.bytes, len(small.m))
	}
	big := "SELECT '" + strings.Repeat("x", maxCachedText) + "'"
	small.classify(big, nil, false)
	if _, ok := small.get(big); ok {
		t.Fatal("oversized text cached")
	}
}

// maxFuzzStmt bounds FuzzStmtCache inputs; see there.
const maxFuzzStmt = 256

// FuzzStmtCache checks that a text classified through a cache primed with
// another text (and with a variant of it, same template) gets exactly the
// parser's classification.
//
// Inputs are capped at maxFuzzStmt bytes. Each execution makes about ten
// parser calls through cgo (classify twice, fingerprint and normalize every
// statement), and the fuzzer minimizes every new interesting input by
// trying to delete every substring, which is quadratic in its length: with
// the old 2000-byte cap a single long input kept the worker minimizing for
// the whole -fuzzminimizetime (60 s by default) while the coordinator
// printed "execs: N (0/sec)". The cache's behaviour depends on templates and
// digit runs, which short texts exercise fully.
func FuzzStmtCache(f *testing.F) {
	for _, q := range cacheQueries {
		f.Add(q, uint64(1))
	}
	f.Fuzz(func(t *testing.T, q string, seed uint64) {
		if len(q) > maxFuzzStmt {
			return
		}
		r := rand.New(rand.NewPCG(seed, seed))
		c := newStmtCache(10, 1<<20)
		sc := &tmplScratch{}
		checkCached(t, c, sc, q)
		checkCached(t, c, sc, variant(q, r))
	})
}
