package policy

import "testing"

func TestSQLRules(t *testing.T) {
	p := mustParse(t, `
roles:
  - name: dba
    groups: [dba]
    targets: {names: [orders-db]}
    sql:
      block: [drop, truncate, alter_role, delete_without_where, update_without_where]
      review: [ddl]
  - name: dev
    groups: [engineering]
    targets: {labels: {env: staging}}
  - name: reader
    groups: [readers]
    targets: {names: [orders-db]}
    sql:
      review: [drop, write]
`)
	db := Target{Name: "orders-db", Kind: "postgres"}
	dba := Identity{User: "dana", Groups: []string{"dba"}}
	both := Identity{User: "bo", Groups: []string{"dba", "readers"}}
	reader := Identity{User: "rita", Groups: []string{"readers"}}
	tests := []struct {
		name string
		id   Identity
		st   SQLStatement
		want Action
		rule string
	}{
		{"select allowed", dba, SQLStatement{Kinds: []string{"select"}}, ActionAllow, ""},
		{"drop blocked", dba, SQLStatement{Kinds: []string{"drop", "ddl", "write"}}, ActionBlock, "drop"},
		{"create reviewed", dba, SQLStatement{Kinds: []string{"create", "ddl", "write"}}, ActionReview, "ddl"},
		{"block beats review across roles", both, SQLStatement{Kinds: []string{"drop", "ddl", "write"}}, ActionBlock, "drop"},
		{"write kind", reader, SQLStatement{Kinds: []string{"insert", "write"}}, ActionReview, "write"},
		{"opaque blocked by any block rule", dba, SQLStatement{Opaque: true}, ActionBlock, "drop"},
		{"opaque held by review rule", reader, SQLStatement{Opaque: true}, ActionReview, "drop"},
		{"no rules off target", Identity{User: "x", Groups: []string{"engineering"}}, SQLStatement{Kinds: []string{"drop"}}, ActionAllow, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.SQLRules(tc.id, db).Decide(tc.st)
			if d.Action != tc.want || d.Rule != tc.rule {
				t.Fatalf("got %v rule %q (%s), want %v rule %q", d.Action, d.Rule, d.Reason, tc.want, tc.rule)
			}
			if d.Action != ActionAllow && d.Reason == "" {
				t.Fatal("decision without reason")
			}
		})
	}
	t.Run("DecideAll takes the strongest", func(t *testing.T) {
		d := p.SQLRules(dba, db).DecideAll([]SQLStatement{{Kinds: []string{"select"}}, {Kinds: []string{"create", "ddl"}}, {Kinds: []string{"truncate", "write"}}})
		if d.Action != ActionBlock || d.Rule != "truncate" {
			t.Fatalf("got %+v", d)
		}
	})
	t.Run("all", func(t *testing.T) {
		p := mustParse(t, "roles:\n  - name: ro\n    users: [u]\n    targets: {names: [db]}\n    sql: {block: [all]}\n")
		if !p.SQLRules(Identity{User: "u"}, Target{Name: "db"}).Decide(SQLStatement{Kinds: []string{"select"}}).Blocked() {
			t.Fatal("all did not block select")
		}
	})
}

func TestMaskRules(t *testing.T) {
	p := mustParse(t, samplePolicy)
	m := p.MaskRules(Identity{User: "dana", Groups: []string{"dba"}}, Target{Name: "orders-db"})
	for _, tc := range []struct {
		table, col string
		want       bool
	}{
		{"customers", "ssn", true},
		{"employees", "SSN", true},
		{"customers", "email", true},
		{"orders", "email", false},
		{"payments", "card_number", true},
		{"customers", "name", false},
	} {
		if got := m.MaskColumn(tc.table, tc.col); got != tc.want {
			t.Errorf("MaskColumn(%s, %s) = %v, want %v", tc.table, tc.col, got, tc.want)
		}
	}
	if !m.MaskColumnName("email") || m.MaskColumnName("name") {
		t.Error("MaskColumnName")
	}
	if !m.MaskTable("customers") || len(m.Patterns) != 3 {
		t.Errorf("MaskTable/Patterns: %+v", m)
	}
	if !p.MaskRules(Identity{User: "e", Groups: []string{"engineering"}}, Target{Name: "orders-db"}).Empty() {
		t.Error("a role that does not reach the target contributed masks")
	}
}
