package main

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// Benchmark is one numbered benchmark of issue 8. Run measures jumpgate
// and its reference in the same run, interleaved, and returns one or more
// table rows. A Run error is reported in its rows; it does not stop the
// other benchmarks.
type Benchmark struct {
	// ID orders the table ("1", "2", "4a"...); Planned entries are matched
	// by the ID prefix before any letter.
	ID    string
	Title string
	// Rows lists more row IDs it produces ("2" for benchmark "1"), so that
	// -only and Planned match them too.
	Rows []string
	Run  func(ctx context.Context, e *Env) ([]Row, error)
}

// has reports whether b produces row id.
func (b Benchmark) has(id string) bool {
	return idPrefix(b.ID) == id || slices.ContainsFunc(b.Rows, func(r string) bool { return idPrefix(r) == id })
}

// Planned is a benchmark the table always lists. Until a Benchmark with
// the same ID is registered (PostgreSQL and Kubernetes forwarders: add a
// file in this package that calls register from init), its row reads "not
// measured in this build".
type Planned struct {
	ID, Title, Goal string
}

var registry []Benchmark

// register adds b to the run; files of this package call it from init.
func register(b Benchmark) { registry = append(registry, b) }

// planned are the rows of issue 8 that are measured elsewhere, later.
var planned []Planned

// GoalKind says how a row's goal is checked.
type GoalKind int

const (
	// NoGoal: reported only.
	NoGoal GoalKind = iota
	// RatioAtLeast: jumpgate/reference ≥ Value (throughputs).
	RatioAtLeast
	// RatioAtMost: jumpgate/reference ≤ Value (latencies, memory).
	RatioAtMost
	// AbsAtLeast: the jumpgate median ≥ Value (in the row's unit).
	AbsAtLeast
	// AbsAtMost: the jumpgate median ≤ Value (Goal.Unit; memory).
	AbsAtMost
	// DiffAtMost: median(JG) − median(Ref) ≤ Value (Goal.Unit; latency
	// overhead).
	DiffAtMost
)

// Goal is a row's target.
type Goal struct {
	Kind  GoalKind
	Value float64
}

func (g Goal) String() string {
	switch g.Kind {
	case RatioAtLeast:
		return fmt.Sprintf("≥ %g×", g.Value)
	case RatioAtMost:
		return fmt.Sprintf("≤ %g×", g.Value)
	case AbsAtLeast:
		return fmt.Sprintf("≥ %g/s", g.Value)
	case AbsAtMost:
		return fmt.Sprintf("≤ %g", g.Value)
	case DiffAtMost:
		return fmt.Sprintf("≤ +%g", g.Value)
	}
	return "—"
}

// Row is one line of the table: samples of jumpgate and of the reference
// (one per interleaved round, or the per-round statistic), in Unit.
type Row struct {
	ID, Title string
	Unit      string
	JG, Ref   []float64
	// RefName names the reference ("OpenSSH sshd -J", "ed25519 sign only").
	RefName string
	Goal    Goal
	// Method says how it was measured; shown in the notes column.
	Method string
	// Err, when set, replaces the numbers.
	Err error
	// NotMeasured marks a planned row without an implementation.
	NotMeasured bool
}

// GoalText is the goal as the table shows it: absolute goals and
// overheads carry the row's unit.
func (r Row) GoalText() string {
	switch r.Goal.Kind {
	case AbsAtMost:
		return r.Goal.String() + " " + r.Unit
	case DiffAtMost:
		return r.Goal.String() + " " + r.Unit + " over the reference"
	}
	return r.Goal.String()
}

// Ratio is median(JG)/median(Ref).
func (r Row) Ratio() float64 {
	if len(r.JG) == 0 || len(r.Ref) == 0 {
		return math.NaN()
	}
	return median(r.JG) / median(r.Ref)
}

// Met reports whether the goal is met ("yes", "no", or "—").
func (r Row) Met() string {
	if r.Err != nil || r.NotMeasured || len(r.JG) == 0 {
		return "—"
	}
	ok := false
	switch r.Goal.Kind {
	case NoGoal:
		return "—"
	case RatioAtLeast:
		ok = r.Ratio() >= r.Goal.Value
	case RatioAtMost:
		ok = r.Ratio() <= r.Goal.Value
	case AbsAtLeast:
		ok = median(r.JG) >= r.Goal.Value
	case AbsAtMost:
		ok = median(r.JG) <= r.Goal.Value
	case DiffAtMost:
		ok = len(r.Ref) > 0 && median(r.JG)-median(r.Ref) <= r.Goal.Value
	}
	if ok {
		return "yes"
	}
	return "**no**"
}
