package postgres

import (
	"slices"
	"strings"
	"testing"

	"github.com/jumpgate/jumpgate/policy"
)

// FuzzClassify feeds arbitrary SQL texts to the classifier and checks what
// the block rules rely on: every statement has kinds or is opaque; a text
// that does not parse is one opaque statement; statement texts come from
// the query; and no text that parses can hide a DROP sent after it or
// cancel one sent before it (a drop rule blocks both strings).
func FuzzClassify(f *testing.F) {
	for _, q := range cacheQueries {
		f.Add(q)
	}
	for _, q := range []string{
		"/* /* nested */ */ SELECT 1", "SELECT 1 -- trailing", "SELECT $x$ a $x$", "BEGIN; SAVEPOINT s; ROLLBACK TO s; COMMIT",
		"CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$", `SELECT U&"a\0061"`,
		"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", "DECLARE c CURSOR FOR SELECT 1", "SELECT E'\\\\'",
	} {
		f.Add(q)
	}
	d := policy.SQLDecider{}
	if p, err := policy.Parse([]byte("roles: [{name: r, groups: [g], targets: {names: [db]}, sql: {block: [drop]}}]")); err == nil {
		d = p.SQLRules(policy.Identity{User: "u", Groups: []string{"g"}}, policy.Target{Name: "db"})
	} else {
		f.Fatal(err)
	}
	blocked := func(q string) bool {
		sts, _ := Classify(q, nil)
		ss := make([]policy.SQLStatement, len(sts))
		for i := range sts {
			ss[i] = sts[i].SQLStatement
		}
		return d.DecideAll(ss).Blocked()
	}
	f.Fuzz(func(t *testing.T, q string) {
		if len(q) > maxFuzzStmt { // see FuzzStmtCache
			return
		}
		sts, err := Classify(q, nil)
		if len(sts) == 0 {
			t.Fatal("no statements")
		}
		if err != nil && (len(sts) != 1 || !sts[0].Opaque) {
			t.Fatalf("parse error %v but %d statements, opaque=%v", err, len(sts), sts[0].Opaque)
		}
		for _, s := range sts {
			if !s.Opaque && len(s.Kinds) == 0 {
				t.Fatalf("%q: statement %q with no kinds", q, s.Text)
			}
			if !strings.Contains(q, s.Text) {
				t.Fatalf("%q: statement text %q not in the query", q, s.Text)
			}
			if slices.Contains(s.Kinds, "") {
				t.Fatalf("%q: empty kind", q)
			}
		}
		if err == nil && !blocked(q+"\n;DROP TABLE t") {
			t.Fatalf("%q hides a DROP sent after it", q)
		}
		if !blocked("DROP TABLE t;\n" + q) {
			t.Fatalf("%q cancels a DROP sent before it", q)
		}
	})
}
