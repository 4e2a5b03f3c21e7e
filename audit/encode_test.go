package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

type textKind string

// encodeCases are events whose encoding must equal json.Marshal's: every
// detail type the forwarders write, escapes, UTF-8, invalid bytes,
// numbers at encoding/json's format boundaries, and values only
// json.Marshal knows.
func encodeCases() []Event {
	at := time.Date(2026, 11, 27, 3, 4, 5, 123456000, time.UTC)
	return []Event{
		{ID: "a", Seq: 1, Time: at, Type: SQLQuery, User: "dana@example.com", Target: "orders-db", Session: "s-1", Details: map[string]any{}},
		{ID: "b", Seq: 2, Time: at.Round(time.Second), Type: Exec, Source: "127.0.0.1:22", Details: nil, PrevHash: "ab"},
		{ID: "c", Seq: 1 << 62, Time: at.In(time.FixedZone("x", 3600)), Type: SQLQuery, Details: map[string]any{
			"text":        "SELECT '<script>' || $1 & \"q\" \\ \n\t\r\b\f\x00\x1f\x7f",
			"utf8":        "héllo ✓ \u2028 \u2029 😀",
			"invalid":     "a\xffb\xc3",
			"kinds":       []string{"select", "with \"q\""},
			"nokinds":     []string(nil),
			"empty":       []string{},
			"rows":        int64(-12),
			"n":           42,
			"i32":         int32(-7),
			"u64":         uint64(math.MaxUint64),
			"u32":         uint32(7),
			"ok":          true,
			"no":          false,
			"none":        nil,
			"duration_ms": 0.123,
			"tiny":        1e-7,
			"small":       0.000001,
			"big":         1e21,
			"almostbig":   999999999999999999999.0,
			"neg":         -2.5e-10,
			"zero":        0.0,
			"negzero":     math.Copysign(0, -1),
			"nested":      map[string]any{"b": 1, "a": []any{"x", 2.5, nil}},
			"raw":         json.RawMessage(` {"z" : 1,"a":[1, 2]} `),
			"named":       textKind("k<"),
			"dur":         time.Duration(1500),
			"":            "empty key",
			"k\"ey<":      "odd key",
		}},
	}
}

// checkEncode fails t unless appendUnhashed gives json.Marshal's bytes.
func checkEncode(t *testing.T, e Event) {
	t.Helper()
	want, err := json.Marshal(unhashed{e.ID, e.Seq, e.Time, e.Type, e.User, e.Target, e.Session, e.Source, e.Details, e.PrevHash})
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendUnhashed(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("event %q:\n got %s\nwant %s", e.ID, got, want)
	}
}

func TestEncodeMatchesJSON(t *testing.T) {
	for _, e := range encodeCases() {
		checkEncode(t, e)
	}
}

func TestEncodeErrorsAsJSON(t *testing.T) {
	for name, e := range map[string]Event{
		"NaN":      {Type: "x", Details: map[string]any{"v": math.NaN()}},
		"Inf":      {Type: "x", Details: map[string]any{"v": math.Inf(1)}},
		"channel":  {Type: "x", Details: map[string]any{"v": make(chan int)}},
		"year 1e4": {Type: "x", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, _, err := Seal(&e); err == nil {
			t.Errorf("%s: sealed without error", name)
		}
	}
}

// FuzzEncodeMatchesJSON holds the hand encoder to json.Marshal's bytes
// for arbitrary strings and numbers in every field it writes itself.
func FuzzEncodeMatchesJSON(f *testing.F) {
	f.Add("id", "dana", "SELECT 1", "k", int64(3), 0.25, uint64(9))
	f.Add("\xff<&>", "\u2028", "a\"b\\c\n", "\x00", int64(-1), 1e-7, uint64(0))
	f.Fuzz(func(t *testing.T, id, user, text, key string, n int64, x float64, seq uint64) {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return
		}
		e := Event{ID: id, Seq: seq, Time: time.Unix(0, n).UTC(), Type: SQLQuery, User: user, Target: text, Session: key, Source: user,
			Details: map[string]any{key: text, "n": n, "x": x, "kinds": []string{text, key}}, PrevHash: id}
		if y := e.Time.Year(); y < 0 || y > 9999 {
			return
		}
		checkEncode(t, e)
	})
}

func BenchmarkSeal(b *testing.B) {
	e := Event{ID: "0192f0a4-6f7b-7c1e-9c3e-aaaaaaaaaaaa", Time: time.Now().UTC(), Type: SQLQuery, User: "dana@example.com", Target: "orders-db", Session: "s-0123456789",
		Details: map[string]any{"protocol": "simple", "kinds": []string{"select"}, "statement": int64(7), "duration_ms": 0.123, "rows": int64(1), "tag": "SELECT 1",
			"fingerprint": "a1b2c3d4e5f6a7b8", "text": "SELECT abalance FROM pgbench_accounts WHERE aid = $1"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Seal(&e); err != nil {
			b.Fatal(err)
		}
	}
}
