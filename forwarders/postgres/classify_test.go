package postgres

import (
	"slices"
	"testing"
)

func TestClassify(t *testing.T) {
	prepared := func(name string) ([]string, bool) {
		if name == "wipe" {
			return []string{"delete", "delete_without_where", "write"}, true
		}
		return nil, false
	}
	tests := []struct {
		name   string
		sql    string
		n      int      // statements
		want   []string // kinds that must be present (in some statement)
		not    []string // kinds that must be absent
		opaque bool
	}{
		{"select", "SELECT * FROM t WHERE id = 1", 1, []string{"select"}, []string{"write"}, false},
		{"drop with comments and case", "/* hi */ dRoP -- x\n TABLE t", 1, []string{"drop", "ddl", "write"}, nil, false},
		{"multi statement", "SELECT 1; DROP TABLE t", 2, []string{"select", "drop"}, nil, false},
		{"truncate", "truncate only t", 1, []string{"truncate", "write"}, nil, false},
		{"delete without where", "DELETE FROM t", 1, []string{"delete", "delete_without_where"}, nil, false},
		{"delete with where", "DELETE FROM t WHERE id=1", 1, []string{"delete"}, []string{"delete_without_where"}, false},
		{"update without where", "UPDATE t SET a=1", 1, []string{"update_without_where"}, nil, false},
		{"writable CTE", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", 1, []string{"delete_without_where", "select", "write"}, nil, false},
		{"CTE update in insert", "WITH u AS (UPDATE t SET a=1 RETURNING a) INSERT INTO x SELECT a FROM u", 1, []string{"update_without_where", "insert"}, nil, false},
		{"alter role", "ALTER ROLE bob WITH SUPERUSER", 1, []string{"alter_role", "superuser", "ddl"}, nil, false},
		{"rename role", "ALTER ROLE bob RENAME TO alice", 1, []string{"alter_role"}, nil, false},
		{"create role", "CREATE ROLE x LOGIN", 1, []string{"create_role"}, nil, false},
		{"grant", "GRANT SELECT ON t TO x", 1, []string{"grant"}, nil, false},
		{"revoke", "REVOKE SELECT ON t FROM x", 1, []string{"revoke"}, nil, false},
		{"ddl create", "CREATE TABLE x (a int)", 1, []string{"create", "ddl"}, nil, false},
		{"comment", "COMMENT ON TABLE t IS 'x'", 1, []string{"ddl"}, nil, false},
		{"alter table", "ALTER TABLE t ADD COLUMN b int", 1, []string{"alter", "ddl"}, nil, false},
		{"do block", "DO $$ BEGIN PERFORM 1; END $$", 1, []string{"do", "write"}, nil, false},
		{"do block with drop", "DO $$ BEGIN DROP TABLE t; END $$", 1, []string{"do", "drop"}, nil, false},
		{"do block with dynamic sql", "DO $$ BEGIN EXECUTE 'DR' || 'OP TABLE t'; END $$", 1, []string{"do"}, nil, true},
		{"explain analyze runs", "EXPLAIN ANALYZE DELETE FROM t", 1, []string{"delete_without_where", "explain_analyze"}, nil, false},
		{"explain (analyze true)", "EXPLAIN (ANALYZE true) UPDATE t SET a = 1", 1, []string{"update_without_where"}, nil, false},
		{"prepare", "PREPARE p AS DELETE FROM t", 1, []string{"prepare", "delete_without_where"}, nil, false},
		{"execute known", "EXECUTE wipe", 1, []string{"execute", "delete_without_where"}, nil, false},
		{"execute unknown", "EXECUTE other", 1, []string{"execute"}, nil, true},
		{"sql function body", "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'", 1, []string{"create", "delete_without_where"}, nil, false},
		{"sql standard body", "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END", 1, []string{"delete_without_where"}, nil, false},
		{"plpgsql function body", "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN TRUNCATE t; END $b$", 1, []string{"truncate"}, nil, false},
		{"rule with action", "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u", 1, []string{"create", "delete_without_where"}, nil, false},
		{"trigger", "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", 1, []string{"create", "ddl"}, nil, false},
		{"copy program", "COPY t FROM PROGRAM 'id'", 1, []string{"copy_program", "copy_from", "superuser"}, nil, false},
		{"copy to stdout", "COPY t (a, b) TO STDOUT", 1, []string{"copy_to"}, []string{"write"}, false},
		{"copy query to stdout", "COPY (SELECT ssn FROM c) TO STDOUT WITH (FORMAT csv)", 1, []string{"copy_to", "select"}, nil, false},
		{"set role", "SET ROLE postgres", 1, []string{"set", "superuser"}, nil, false},
		{"alter system", "ALTER SYSTEM SET work_mem = '1GB'", 1, []string{"superuser"}, nil, false},
		{"select into", "SELECT * INTO newt FROM t", 1, []string{"create", "ddl"}, nil, false},
		{"set_config in select", "SELECT set_config('role', 'x', false)", 1, []string{"set"}, nil, false},
		{"transaction", "BEGIN", 1, []string{"transaction"}, []string{"write"}, false},
		{"unparseable", "SELEKT 1", 1, nil, nil, true},
		{"merge", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", 1, []string{"merge", "delete", "write"}, []string{"delete_without_where"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sts, _ := Classify(tc.sql, prepared)
			if len(sts) != tc.n {
				t.Fatalf("got %d statements, want %d: %+v", len(sts), tc.n, sts)
			}
			var kinds []string
			opaque := false
			for _, s := range sts {
				kinds = append(kinds, s.Kinds...)
				opaque = opaque || s.Opaque
			}
			for _, k := range tc.want {
				if !slices.Contains(kinds, k) {
					t.Errorf("kind %q missing from %v", k, kinds)
				}
			}
			for _, k := range tc.not {
				if slices.Contains(kinds, k) {
					t.Errorf("kind %q present in %v", k, kinds)
				}
			}
			if opaque != tc.opaque {
				t.Errorf("opaque = %v, want %v", opaque, tc.opaque)
			}
		})
	}
	t.Run("split texts and columns", func(t *testing.T) {
		sts, err := Classify("SELECT c.ssn AS x FROM customers c; select row_to_json(c) from customers c", nil)
		if err != nil || sts[0].Text != "SELECT c.ssn AS x FROM customers c" || sts[1].Text != "select row_to_json(c) from customers c" {
			t.Fatalf("%v %q %q", err, sts[0].Text, sts[1].Text)
		}
		if !slices.Contains(sts[0].Columns, "ssn") || !slices.Contains(sts[0].Relations, "customers") || sts[0].WholeRow {
			t.Fatalf("first: %+v", sts[0])
		}
		if !sts[1].WholeRow {
			t.Fatalf("row_to_json(c) not seen as whole-row: %+v", sts[1])
		}
	})
}
