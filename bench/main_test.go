package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	cases := []struct {
		q    float64
		want float64
	}{{0.5, 3}, {0.99, 5}, {0, 1}, {0.2, 1}, {0.21, 2}}
	for _, c := range cases {
		if got := quantile(xs, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	if xs[0] != 5 {
		t.Error("quantile sorted its input in place")
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{{"1G", 1 << 30, true}, {"200M", 200 << 20, true}, {"64k", 64 << 10, true}, {"4096", 4096, true}, {"0", 0, false}, {"xM", 0, false}}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v", c.in, got, err)
		}
	}
}

func TestRowGoals(t *testing.T) {
	cases := []struct {
		name string
		row  Row
		want string
	}{
		{"throughput met", Row{JG: []float64{96}, Ref: []float64{100}, Goal: Goal{RatioAtLeast, 0.95}}, "yes"},
		{"throughput missed", Row{JG: []float64{90}, Ref: []float64{100}, Goal: Goal{RatioAtLeast, 0.95}}, "**no**"},
		{"latency met", Row{JG: []float64{12}, Ref: []float64{10}, Goal: Goal{RatioAtMost, 1.3}}, "yes"},
		{"latency missed", Row{JG: []float64{14}, Ref: []float64{10}, Goal: Goal{RatioAtMost, 1.3}}, "**no**"},
		{"absolute", Row{JG: []float64{1999}, Ref: []float64{1}, Goal: Goal{AbsAtLeast, 2000}}, "**no**"},
		{"no goal", Row{JG: []float64{1}, Ref: []float64{1}}, "—"},
		{"not measured", Row{NotMeasured: true, Goal: Goal{RatioAtLeast, 1}}, "—"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.row.Met(); got != c.want {
				t.Errorf("Met() = %q, want %q (ratio %v)", got, c.want, c.row.Ratio())
			}
		})
	}
}

func TestWriteResultsKeepsAnalysis(t *testing.T) {
	f := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := writeResults(f, "table one\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(b, "\n## Analysis\nkept\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeResults(f, "table two\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(f)
	s := string(b)
	if strings.Contains(s, "table one") || !strings.Contains(s, "table two") || !strings.Contains(s, "## Analysis\nkept") {
		t.Fatalf("results file:\n%s", s)
	}
	if strings.Count(s, beginMark) != 1 || strings.Count(s, endMark) != 1 {
		t.Fatalf("markers duplicated:\n%s", s)
	}
}

func TestPlannedRowsWithoutBenchmark(t *testing.T) {
	for _, p := range planned {
		for _, b := range registry {
			if b.has(p.ID) {
				t.Errorf("planned row %s is registered by %s; drop it from planned", p.ID, b.ID)
			}
		}
	}
	if !selected("4", "4b") || selected("3", "4b") || !selected("", "7") {
		t.Error("selected does not match row IDs by number")
	}
}

func TestMergeResultsKeepsOtherRows(t *testing.T) {
	f := filepath.Join(t.TempDir(), "RESULTS.md")
	full := "## run\n\nFlags: x\n\n| # | benchmark | jumpgate | reference | ratio | goal | met | method |\n|---|---|---|---|---|---|---|---|\n" +
		"| 1 | transfer | 1 | 1 | 1× | — | — | m |\n| 7 | pg old | 1 | 1 | 1× | — | — | m |\n| 9 | later | 1 | 1 | 1× | — | — | m |\n\n"
	if err := writeResults(f, full); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(b, "\n## Analysis\nkept\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	fl := &Flags{Only: "pg"}
	rows := []Row{{ID: "7", Title: "pg new", Unit: "tps", JG: []float64{9}, Ref: []float64{10}}, {ID: "7b", Title: "pg masked", Unit: "tps", JG: []float64{8}, Ref: []float64{10}}}
	for i := 0; i < 2; i++ { // twice: the note is replaced, not repeated
		table, err := mergeResults(f, fl, rows, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeResults(f, table); err != nil {
			t.Fatal(err)
		}
	}
	b, _ = os.ReadFile(f)
	s := string(b)
	for _, want := range []string{"| 1 | transfer", "| 7 | pg new", "| 7b | pg masked", "| 9 | later", "Flags: x", "## Analysis\nkept", "`go run ./bench -only pg`"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	if strings.Contains(s, "pg old") || strings.Count(s, "-only pg`") != 1 {
		t.Errorf("old row or repeated note in:\n%s", s)
	}
	if i7, i7b, i9 := strings.Index(s, "| 7 |"), strings.Index(s, "| 7b |"), strings.Index(s, "| 9 |"); !(i7 < i7b && i7b < i9) {
		t.Errorf("rows out of order:\n%s", s)
	}
}
