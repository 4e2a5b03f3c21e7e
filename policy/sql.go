package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// SQLStatement is what SQL rules are evaluated against: the kinds a
// classifier (the PostgreSQL forwarder, with the real parser) found in one
// statement. Kinds use the names in SQLKinds; a statement usually has
// several (a DROP TABLE is "drop" and "ddl" and "write").
type SQLStatement struct {
	Kinds []string
	// Opaque marks a statement the classifier could not see into (it did
	// not parse, or EXECUTEs a statement of unknown origin). Any block rule
	// blocks it and any review rule holds it: rules fail closed.
	Opaque bool
}

// SQLDecider evaluates the SQL rules a user has on one target: those of
// every role that reaches it. Block beats review.
type SQLDecider struct {
	block, review []string
}

// SQLRules returns the SQL rules id has on t.
func (p *Policy) SQLRules(id Identity, t Target) SQLDecider {
	var d SQLDecider
	for _, r := range p.RolesReaching(id, t) {
		d.block = appendNew(d.block, r.SQL.Block...)
		d.review = appendNew(d.review, r.SQL.Review...)
	}
	return d
}

func appendNew(dst []string, src ...string) []string {
	for _, s := range src {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}

// Empty reports whether no rule can ever block or hold a statement.
func (d SQLDecider) Empty() bool { return len(d.block) == 0 && len(d.review) == 0 }

// Decide returns the decision on one statement.
func (d SQLDecider) Decide(s SQLStatement) Decision {
	if k, ok := matchKinds(d.block, s); ok {
		return Decision{Action: ActionBlock, Rule: k, Matched: k,
			Reason: fmt.Sprintf("%s is blocked by policy (sql.block: %s)", describeKind(k, s), k)}
	}
	if k, ok := matchKinds(d.review, s); ok {
		return Decision{Action: ActionReview, Rule: k, Matched: k,
			Reason: fmt.Sprintf("%s needs approval (sql.review: %s)", describeKind(k, s), k)}
	}
	return Decision{Action: ActionAllow}
}

// DecideAll decides a group of statements sent together (one simple-query
// string): the strongest decision wins, so a blocked statement refuses the
// whole string.
func (d SQLDecider) DecideAll(ss []SQLStatement) Decision {
	best := Decision{Action: ActionAllow}
	for _, s := range ss {
		if dec := d.Decide(s); dec.Action > best.Action {
			best = dec
		}
	}
	return best
}

func matchKinds(rules []string, s SQLStatement) (string, bool) {
	for _, r := range rules {
		if r == "all" || s.Opaque || slices.Contains(s.Kinds, r) {
			return r, true
		}
	}
	return "", false
}

func describeKind(k string, s SQLStatement) string {
	if s.Opaque && !slices.Contains(s.Kinds, k) && k != "all" {
		return "a statement jumpgate cannot inspect"
	}
	switch k {
	case "delete_without_where":
		return "DELETE without WHERE"
	case "update_without_where":
		return "UPDATE without WHERE"
	case "all":
		return "this statement"
	case "ddl", "write", "superuser", "other":
		return "this " + k + " statement"
	}
	return strings.ToUpper(strings.ReplaceAll(k, "_", " "))
}

// MaskSet is the masking a user gets on one target: column rules
// (table.column, either part may be a path.Match glob such as *) and value
// detectors by name (see MaskPatterns; "re:<regex>" for custom ones).
type MaskSet struct {
	columns  []colRule
	Patterns []string
}

type colRule struct{ table, column string }

// MaskRules returns the union of the mask rules of id's roles reaching t.
func (p *Policy) MaskRules(id Identity, t Target) MaskSet {
	var m MaskSet
	for _, r := range p.RolesReaching(id, t) {
		for _, c := range r.Mask.Columns {
			tb, col, _ := strings.Cut(strings.ToLower(c), ".")
			if !slices.Contains(m.columns, colRule{tb, col}) {
				m.columns = append(m.columns, colRule{tb, col})
			}
		}
		m.Patterns = appendNew(m.Patterns, r.Mask.Patterns...)
	}
	return m
}

// Empty reports whether nothing is ever masked.
func (m MaskSet) Empty() bool { return len(m.columns) == 0 && len(m.Patterns) == 0 }

// HasColumns reports whether there are column rules.
func (m MaskSet) HasColumns() bool { return len(m.columns) > 0 }

// MaskColumn reports whether column of table (unqualified names, as in the
// catalog) is masked.
func (m MaskSet) MaskColumn(table, column string) bool {
	table, column = strings.ToLower(table), strings.ToLower(column)
	for _, r := range m.columns {
		if globMatch(r.table, table) && globMatch(r.column, column) {
			return true
		}
	}
	return false
}

// MaskColumnName reports whether a column of this name is masked in some
// table: used for values computed from columns whose table is unknown.
func (m MaskSet) MaskColumnName(column string) bool {
	column = strings.ToLower(column)
	for _, r := range m.columns {
		if globMatch(r.column, column) {
			return true
		}
	}
	return false
}

// MaskTable reports whether some column of table may be masked.
func (m MaskSet) MaskTable(table string) bool {
	table = strings.ToLower(table)
	for _, r := range m.columns {
		if globMatch(r.table, table) {
			return true
		}
	}
	return false
}

func globMatch(pattern, s string) bool {
	if pattern == "*" {
		return true
	}
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}
