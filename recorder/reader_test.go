package recorder

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const hdr = `{"version": 2, "width": 80, "height": 24}` + "\n"

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec.cast")
	must(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestOpenAndReadMalformed(t *testing.T) {
	long := `[1, "o", "` + strings.Repeat("a", MaxLineBytes) + `"]` + "\n"
	tests := []struct {
		name     string
		content  string
		wantLine int // line of the error
		wantMsg  string
	}{
		{"empty file", "", 1, "no header"},
		{"header not JSON", "hello\n", 1, "invalid header"},
		{"header is an array", "[2, 80, 24]\n", 1, "invalid header"},
		{"version 1", `{"version": 1, "width": 80, "height": 24}` + "\n", 1, "version 1"},
		{"zero width", `{"version": 2, "width": 0, "height": 24}` + "\n", 1, "width 0"},
		{"huge height", `{"version": 2, "width": 80, "height": 99999999}` + "\n", 1, "height"},
		{"truncated header", `{"version": 2, "wid`, 1, "truncated header"},
		{"header too long", `{"title": "` + strings.Repeat("t", MaxLineBytes) + `"}` + "\n", 1, "longer than"},
		{"event not an array", hdr + `{"t": 1}` + "\n" + `[2, "o", "x"]` + "\n", 2, "not a JSON array"},
		{"two elements", hdr + `[1, "o"]` + "\n[2, \"o\", \"x\"]\n", 2, "2 elements"},
		{"time is a string", hdr + `[0.5, "o", "a"]` + "\n" + `["1", "o", "x"]` + "\n", 3, "time is not a number"},
		{"null time", hdr + `[null, "o", "x"]` + "\n\n", 2, "null"},
		{"negative time", hdr + `[-1, "o", "x"]` + "\n", 2, "out of range"},
		{"huge time", hdr + `[1e300, "o", "x"]` + "\n", 2, "out of range"},
		{"unknown code", hdr + `[1, "x", "x"]` + "\n", 2, "unknown event code"},
		{"data not a string", hdr + `[1, "o", 5]` + "\n", 2, "data is not a string"},
		{"bad resize", hdr + `[1, "r", "80by24"]` + "\n", 2, "COLSxROWS"},
		{"zero resize", hdr + `[1, "r", "0x24"]` + "\n", 2, "COLSxROWS"},
		{"time goes backwards", hdr + `[2, "o", "a"]` + "\n" + `[1, "o", "b"]` + "\n", 3, "before the previous"},
		{"blank line", hdr + `[1, "o", "a"]` + "\n\n" + `[2, "o", "b"]` + "\n", 3, "invalid event"},
		{"line too long", hdr + long + `[2, "o", "b"]` + "\n", 2, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.content)
			var err error
			r, err := Open(path)
			if err == nil {
				defer r.Close()
				for err == nil {
					_, err = r.Next()
				}
			}
			if errors.Is(err, io.EOF) {
				t.Fatal("read to the end without an error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line != tc.wantLine {
				t.Errorf("error %v: want a SyntaxError at line %d", err, tc.wantLine)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) || !strings.HasPrefix(err.Error(), "recorder: "+path+": ") {
				t.Errorf("error %q: want it to start with \"recorder: %s: \" and mention %q", err, path, tc.wantMsg)
			}
		})
	}
}

func TestReadValidVariants(t *testing.T) {
	tests := []struct {
		name          string
		content       string
		want          []Event
		wantTruncated bool
	}{
		{"header only without newline", strings.TrimSuffix(hdr, "\n"), nil, false},
		{"last event without newline", hdr + `[1, "o", "a"]` + "\n" + `[2.5, "i", "b"]`,
			[]Event{{time.Second, EventOutput, "a"}, {2500 * time.Millisecond, EventInput, "b"}}, false},
		{"truncated last line", hdr + `[1, "o", "a"]` + "\n" + `[2.5, "o", "hel`,
			[]Event{{time.Second, EventOutput, "a"}}, true},
		{"garbage tail without newline", hdr + `[1, "o", "a"]` + "\n\x00\x00\x00\x00",
			[]Event{{time.Second, EventOutput, "a"}}, true},
		{"integer times, markers, escapes, CRLF", hdr + `[0, "m", ""]` + "\r\n" + `[3, "o", "\u00e9\ud83d\ude00\u001b"]` + "\r\n",
			[]Event{{0, EventMarker, ""}, {3 * time.Second, EventOutput, "é😀\x1b"}}, false},
		{"asciinema header with extras", `{"version": 2, "width": 100, "height": 30, "timestamp": 1700000000, "idle_time_limit": 2.5, "env": {"SHELL": null, "TERM": "xterm"}, "theme": {"fg": "#fff", "bg": "#000", "palette": "#000:#111"}, "future_field": [1]}` + "\n" + `[0.1234567, "o", "x"]` + "\n",
			[]Event{{123457 * time.Microsecond, EventOutput, "x"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, got := readAll(t, writeFile(t, tc.content))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("events = %q, want %q", got, tc.want)
			}
			if r.Truncated != tc.wantTruncated {
				t.Errorf("Reader.Truncated = %v, want %v", r.Truncated, tc.wantTruncated)
			}
			// The streaming parser agrees with the file reader.
			d, err := Parse(strings.NewReader(tc.content))
			must(t, err)
			var streamed []Event
			for {
				ev, err := d.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				must(t, err)
				streamed = append(streamed, ev)
			}
			if !reflect.DeepEqual(streamed, tc.want) || d.Truncated() != tc.wantTruncated {
				t.Errorf("Parse: events %q truncated %v; want %q, %v", streamed, d.Truncated(), tc.want, tc.wantTruncated)
			}
			if !reflect.DeepEqual(d.Header(), r.Header) {
				t.Errorf("Parse header %+v != Open header %+v", d.Header(), r.Header)
			}
		})
	}
}

// recordSample writes a recording with an event every second for n seconds
// and returns its path and events.
func recordSample(t *testing.T, n int, opts Options) (string, []Event) {
	t.Helper()
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, opts)
	var want []Event
	for i := range n {
		clock.Advance(time.Second)
		data := strings.Repeat(string(rune('a'+i%26)), 1+i%7) + "é\r\n"
		must(t, w.Output([]byte(data)))
		want = append(want, Event{time.Duration(i+1) * time.Second, EventOutput, data})
		if i%10 == 9 {
			must(t, w.Input([]byte("q")))
			want = append(want, Event{time.Duration(i+1) * time.Second, EventInput, "q"})
		}
	}
	_, err := w.Close()
	must(t, err)
	return path, want
}

func TestCrashPrefix(t *testing.T) {
	path, want := recordSample(t, 30, Options{IndexInterval: 5 * time.Second})
	data, err := os.ReadFile(path)
	must(t, err)
	lines := bytes.SplitAfter(data, []byte("\n"))
	// Cut at every byte of the last three lines and inside the header's
	// successor.
	var cuts []int
	for i := len(data) - len(lines[len(lines)-2]) - len(lines[len(lines)-3]) - len(lines[len(lines)-4]); i <= len(data); i++ {
		cuts = append(cuts, i)
	}
	cuts = append(cuts, len(lines[0])+3)
	for _, cut := range cuts {
		prefix := data[:cut]
		validEnd := bytes.LastIndexByte(prefix, '\n') + 1
		wantEvents := bytes.Count(prefix[len(lines[0]):], []byte("\n"))
		wantExport := prefix[:validEnd]
		if cut > validEnd && data[cut] == '\n' {
			// Only the newline is missing: the last event is complete.
			validEnd, wantEvents, wantExport = cut, wantEvents+1, data[:cut+1]
		}
		crashed := filepath.Join(t.TempDir(), "crashed.cast")
		must(t, os.WriteFile(crashed, prefix, 0o600))
		// A stale index from the full recording points past the cut.
		must(t, os.Link(path+IndexSuffix, crashed+IndexSuffix))

		r, got := readAll(t, crashed)
		if r.Truncated != (validEnd != cut) {
			t.Errorf("cut %d: Truncated = %v, want %v", cut, r.Truncated, validEnd != cut)
		}
		if !slices.Equal(got, want[:wantEvents]) {
			t.Fatalf("cut %d: got %d events, want the first %d", cut, len(got), wantEvents)
		}
		var out bytes.Buffer
		must(t, Export(&out, crashed))
		if !bytes.Equal(out.Bytes(), wantExport) {
			t.Errorf("cut %d: export is not the valid prefix:\n%q\nwant\n%q", cut, out.Bytes(), wantExport)
		}
		// Seeking past the end of the prefix is not confused by the stale
		// index.
		must(t, r.SeekTime(25*time.Second))
		ev, err := r.Next()
		if wantEvents > 0 && want[wantEvents-1].Time >= 25*time.Second {
			must(t, err)
			if ev.Time < 25*time.Second {
				t.Errorf("cut %d: seek returned time %v", cut, ev.Time)
			}
		} else if !errors.Is(err, io.EOF) {
			t.Errorf("cut %d: seek beyond the prefix: %v, %v; want EOF", cut, ev, err)
		}
	}
}

func TestExportReproducesRecording(t *testing.T) {
	path, _ := recordSample(t, 40, Options{})
	data, err := os.ReadFile(path)
	must(t, err)
	var out bytes.Buffer
	must(t, Export(&out, path))
	if !bytes.Equal(out.Bytes(), data) {
		t.Errorf("export differs from the recording:\n%s\nwant\n%s", out.Bytes(), data)
	}
	if err := Export(io.Discard, writeFile(t, hdr+"[1, \"o\"]\n")); !errors.Is(err, ErrMalformed) {
		t.Errorf("Export of a malformed file: %v, want ErrMalformed", err)
	}
}

func TestSeekTime(t *testing.T) {
	path, want := recordSample(t, 100, Options{IndexInterval: 7 * time.Second})
	idx, err := os.ReadFile(path + IndexSuffix)
	must(t, err)
	entries, err := parseIndex(idx)
	must(t, err)
	if len(entries) != 14 { // seconds 7, 14, ..., 98
		t.Fatalf("index has %d entries, want 14: %s", len(entries), idx)
	}
	data, err := os.ReadFile(path)
	must(t, err)

	// Setups of the index and recording the seek must cope with.
	setups := map[string]func(t *testing.T, p string){
		"index": func(t *testing.T, p string) {},
		"no index": func(t *testing.T, p string) {
			must(t, os.Remove(p+IndexSuffix))
		},
		"corrupt index": func(t *testing.T, p string) {
			must(t, os.WriteFile(p+IndexSuffix, []byte("{\"t\":\n"), 0o600))
		},
		"index pointing mid-line": func(t *testing.T, p string) {
			var b []byte
			for _, e := range entries {
				b = appendIndexEntry(b, indexEntry{T: e.T, Off: e.Off + 3})
			}
			must(t, os.WriteFile(p+IndexSuffix, b, 0o600))
		},
		"index with wrong times": func(t *testing.T, p string) {
			var b []byte
			for _, e := range entries {
				b = appendIndexEntry(b, indexEntry{T: e.T - time.Second, Off: e.Off})
			}
			must(t, os.WriteFile(p+IndexSuffix, b, 0o600))
		},
	}
	targets := []time.Duration{0, time.Second, 1500 * time.Millisecond, 7 * time.Second, 7*time.Second + 1,
		50 * time.Second, 99 * time.Second, 100 * time.Second, 101 * time.Second, time.Hour}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "rec.cast")
			must(t, os.WriteFile(p, data, 0o600))
			must(t, os.WriteFile(p+IndexSuffix, idx, 0o600))
			setup(t, p)
			r, err := Open(p)
			must(t, err)
			defer r.Close()
			for _, target := range targets {
				must(t, r.SeekTime(target))
				var rest []Event
				for {
					ev, err := r.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					must(t, err)
					rest = append(rest, ev)
				}
				var wantRest []Event
				for _, ev := range want {
					if ev.Time >= target {
						wantRest = append(wantRest, ev)
					}
				}
				if !reflect.DeepEqual(rest, wantRest) {
					t.Errorf("SeekTime(%v): got %d events from %v, want %d", target, len(rest), rest[:min(1, len(rest))], len(wantRest))
				}
			}
		})
	}
}

// TestSeekUsesIndex proves the index is used: the lines before the last
// checkpoint are damaged, so only a seek that skips them can succeed.
func TestSeekUsesIndex(t *testing.T) {
	path, want := recordSample(t, 60, Options{IndexInterval: 10 * time.Second})
	data, err := os.ReadFile(path)
	must(t, err)
	idx, err := os.ReadFile(path + IndexSuffix)
	must(t, err)
	entries, err := parseIndex(idx)
	must(t, err)
	last := entries[len(entries)-2]
	// Damage the second line (the first event) in place.
	secondLine := bytes.IndexByte(data, '\n') + 1
	copy(data[secondLine:], "XXXX")
	must(t, os.WriteFile(path, data, 0o600))

	r, err := Open(path)
	must(t, err)
	defer r.Close()
	if _, err := r.Next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("reading the damaged line: %v, want ErrMalformed", err)
	}
	target := last.T + time.Second
	must(t, r.SeekTime(target))
	ev, err := r.Next()
	must(t, err)
	if ev.Time != target {
		t.Errorf("after SeekTime(%v) got %v", target, ev)
	}
	var wantNext Event
	for _, w := range want {
		if w.Time >= target {
			wantNext = w
			break
		}
	}
	if ev != wantNext {
		t.Errorf("after SeekTime(%v) got %q, want %q", target, ev, wantNext)
	}

	// Without the index the seek has to scan and meets the damage.
	must(t, os.Remove(path+IndexSuffix))
	r2, err := Open(path)
	must(t, err)
	defer r2.Close()
	if err := r2.SeekTime(target); !errors.Is(err, ErrMalformed) {
		t.Errorf("scan over the damaged line: %v, want ErrMalformed", err)
	}
}

// TestSeekEqualTimes: events sharing the time of a checkpoint before it must
// not be skipped.
func TestSeekEqualTimes(t *testing.T) {
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, Options{IndexBytes: 40})
	clock.Advance(5 * time.Second)
	for i := range 20 {
		must(t, w.Output([]byte(strings.Repeat("x", i+1))))
	}
	_, err := w.Close()
	must(t, err)
	r, err := Open(path)
	must(t, err)
	defer r.Close()
	must(t, r.SeekTime(5*time.Second))
	ev, err := r.Next()
	must(t, err)
	if ev.Data != "x" {
		t.Errorf("first event at 5s is %q, want the first one written", ev.Data)
	}
}

func TestParseIndex(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{"empty", "", 0, false},
		{"two", "{\"t\":1.000000,\"off\":50}\n{\"t\":2.5,\"off\":90}\n", 2, false},
		{"truncated last", "{\"t\":1.000000,\"off\":50}\n{\"t\":2", 1, false},
		{"offset not increasing", "{\"t\":1,\"off\":50}\n{\"t\":2,\"off\":50}\n", 0, true},
		{"time decreasing", "{\"t\":3,\"off\":50}\n{\"t\":2,\"off\":60}\n", 0, true},
		{"missing field", "{\"t\":1}\n", 0, true},
		{"negative", "{\"t\":-1,\"off\":5}\n", 0, true},
		{"garbage", "nope\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseIndex([]byte(tc.in))
			if (err != nil) != tc.wantErr || len(got) != tc.want {
				t.Errorf("parseIndex = %v, %v; want %d entries, err %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
