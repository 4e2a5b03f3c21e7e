package recorder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// op is one step of a scripted session.
type op struct {
	advance time.Duration
	out, in string
	cols    int
	rows    int
}

func runOps(t *testing.T, w *Writer, clock *fakeClock, ops []op) {
	t.Helper()
	for _, o := range ops {
		clock.Advance(o.advance)
		switch {
		case o.out != "":
			must(t, w.Output([]byte(o.out)))
		case o.in != "":
			must(t, w.Input([]byte(o.in)))
		case o.cols != 0:
			must(t, w.Resize(o.cols, o.rows))
		}
	}
}

func TestWriterRoundTrip(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		ops  []op
		want []Event
	}{
		{"empty", nil, nil},
		{
			name: "output input resize",
			ops: []op{
				{advance: 10 * ms, out: "$ "},
				{advance: 500 * ms, in: "l"},
				{advance: 1500 * ms, in: "s\r"},
				{advance: 1 * ms, out: "a.txt\r\nb.txt\r\n"},
				{advance: 3 * time.Second, cols: 120, rows: 40},
			},
			want: []Event{
				{10 * ms, EventOutput, "$ "},
				{510 * ms, EventInput, "l"},
				{2010 * ms, EventInput, "s\r"},
				{2011 * ms, EventOutput, "a.txt\r\nb.txt\r\n"},
				{5011 * ms, EventResize, "120x40"},
			},
		},
		{
			name: "json escapes and control bytes",
			ops:  []op{{out: "\x1b[1;31m\"q\" \\ \t\x00\x7f</b>&\u2028"}},
			want: []Event{{0, EventOutput, "\x1b[1;31m\"q\" \\ \t\x00\x7f</b>&\u2028"}},
		},
		{
			name: "sub-microsecond times truncate",
			ops:  []op{{advance: 1500 * time.Nanosecond, out: "x"}, {advance: 400 * time.Nanosecond, out: "y"}},
			want: []Event{{time.Microsecond, EventOutput, "x"}, {time.Microsecond, EventOutput, "y"}},
		},
		{
			name: "empty writes record nothing",
			ops:  []op{{out: "a"}, {advance: ms}},
			want: []Event{{0, EventOutput, "a"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			w, path := newTestWriter(t, clock, Options{})
			runOps(t, w, clock, tc.ops)
			clock.Advance(time.Second)
			sum, err := w.Close()
			must(t, err)

			r, got := readAll(t, path)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("events:\n got %q\nwant %q", got, tc.want)
			}
			if r.Truncated {
				t.Error("Truncated = true for a closed recording")
			}
			h := r.Header
			if h.Version != 2 || h.Width != 80 || h.Height != 24 || h.Title != "test" ||
				h.Timestamp != newFakeClock().Now().Unix() || h.Env["TERM"] != "xterm-256color" {
				t.Errorf("header = %+v", h)
			}

			data, err := os.ReadFile(path)
			must(t, err)
			digest := sha256.Sum256(data)
			var outBytes, inBytes int64
			for _, o := range tc.ops {
				outBytes += int64(len(o.out))
				inBytes += int64(len(o.in))
			}
			var total time.Duration
			for _, o := range tc.ops {
				total += o.advance
			}
			want := Summary{
				SHA256: hex.EncodeToString(digest[:]), Bytes: int64(len(data)),
				OutputBytes: outBytes, InputBytes: inBytes,
				Duration: total + time.Second, Events: int64(len(tc.want)),
			}
			if sum != want {
				t.Errorf("summary:\n got %+v\nwant %+v", sum, want)
			}
		})
	}
}

func TestCreateFileModesAndExclusive(t *testing.T) {
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, Options{})
	_, err := w.Close()
	must(t, err)
	for p, want := range map[string]os.FileMode{path: 0o600, path + IndexSuffix: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		fi, err := os.Stat(p)
		must(t, err)
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode(), want)
		}
	}
	if _, err := Create(path, testHeader(), Options{}); !errors.Is(err, os.ErrExist) || !errors.Is(err, ErrWriteFailed) {
		t.Errorf("Create over an existing recording: %v, want ErrExist and ErrWriteFailed", err)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "x.cast"), Header{Width: 0, Height: 24}, Options{}); err == nil {
		t.Error("Create with width 0 succeeded")
	}
}

func TestUTF8Splitting(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   []string // data of the output events, in order
	}{
		{"two-byte split", []string{"caf\xc3", "\xa9!"}, []string{"caf", "é!"}},
		{"three-byte split 1+2", []string{"\xe2", "\x82\xac"}, []string{"€"}},
		{"three-byte split 2+1", []string{"a\xe2\x82", "\xacb"}, []string{"a", "€b"}},
		{"four-byte over four calls", []string{"\xf0", "\x9f", "\x98", "\x80"}, []string{"😀"}},
		{"whole runes untouched", []string{"日本", "語"}, []string{"日本", "語"}},
		{"invalid byte becomes U+FFFD", []string{"a\xffb"}, []string{"a\uFFFDb"}},
		{"lead byte then ASCII", []string{"x\xc3", "A"}, []string{"x", "\uFFFDA"}},
		{"stray continuation bytes", []string{"\x80\x80\x80\x80"}, []string{"\uFFFD\uFFFD\uFFFD\uFFFD"}},
		{"overlong encoding", []string{"\xc0\xaf"}, []string{"\uFFFD\uFFFD"}},
		{"surrogate half", []string{"\xed\xa0\x80"}, []string{"\uFFFD\uFFFD\uFFFD"}},
		{"dangling lead at close", []string{"ok\xe2\x82"}, []string{"ok", "\uFFFD\uFFFD"}},
		{"invalid second byte after pending lead", []string{"\xe0", "\x80z"}, []string{"\uFFFD\uFFFDz"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			w, path := newTestWriter(t, clock, Options{})
			var in int64
			for _, c := range tc.chunks {
				must(t, w.Output([]byte(c)))
				in += int64(len(c))
			}
			sum, err := w.Close()
			must(t, err)
			if sum.OutputBytes != in {
				t.Errorf("OutputBytes = %d, want %d", sum.OutputBytes, in)
			}
			_, evs := readAll(t, path)
			var got []string
			for _, ev := range evs {
				got = append(got, ev.Data)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("events = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestInputUTF8Splitting(t *testing.T) {
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, Options{})
	must(t, w.Input([]byte("\xc3")))
	must(t, w.Output([]byte("\xe2\x82")))
	must(t, w.Input([]byte("\xb6")))
	must(t, w.Output([]byte("\xac")))
	_, err := w.Close()
	must(t, err)
	_, evs := readAll(t, path)
	want := []Event{{0, EventInput, "ö"}, {0, EventOutput, "€"}}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events = %q, want %q (input and output must hold partial runes separately)", evs, want)
	}
}

func TestLargeOutputIsSplitIntoBoundedEvents(t *testing.T) {
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, Options{})
	// Control bytes escape six-fold, multi-byte runes straddle every cut.
	chunk := strings.Repeat("\x01é€😀x", 1<<16)
	must(t, w.Output([]byte(chunk)))
	_, err := w.Close()
	must(t, err)
	data, err := os.ReadFile(path)
	must(t, err)
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(line) > MaxLineBytes {
			t.Fatalf("line %d has %d bytes, above MaxLineBytes", i+1, len(line))
		}
	}
	_, evs := readAll(t, path)
	if len(evs) < 2 {
		t.Fatalf("got %d events, want the chunk split", len(evs))
	}
	var sb strings.Builder
	for _, ev := range evs {
		if ev.Time != 0 {
			t.Errorf("split event time %v, want 0", ev.Time)
		}
		sb.WriteString(ev.Data)
	}
	if sb.String() != chunk {
		t.Error("concatenated events differ from the written chunk")
	}
}

func TestConcurrentWriters(t *testing.T) {
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, Options{BufferSize: 512, IndexBytes: 256})
	const workers, writes = 4, 200
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range writes {
				clock.Advance(time.Millisecond)
				var err error
				switch g % 3 {
				case 0:
					err = w.Output(fmt.Appendf(nil, "out-%d-%d ü\r\n", g, i))
				case 1:
					err = w.Input(fmt.Appendf(nil, "in-%d-%d", g, i))
				default:
					err = w.Resize(80+i%5, 24)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() { // concurrent explicit syncs and error checks
		for range 20 {
			if err := w.Sync(); err != nil {
				t.Error(err)
			}
			if err := w.Err(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	sum, err := w.Close()
	must(t, err)
	if sum.Events != workers*writes {
		t.Errorf("Summary.Events = %d, want %d", sum.Events, workers*writes)
	}
	_, evs := readAll(t, path)
	seen := map[string]bool{}
	for _, ev := range evs {
		seen[ev.Data] = true
	}
	if len(evs) != workers*writes {
		t.Fatalf("read %d events, want %d", len(evs), workers*writes)
	}
	for i := range writes {
		for _, want := range []string{fmt.Sprintf("out-0-%d ü\r\n", i), fmt.Sprintf("in-1-%d", i), fmt.Sprintf("out-3-%d ü\r\n", i)} {
			if !seen[want] {
				t.Errorf("event %q missing", want)
			}
		}
	}
	// Seeking works on the interleaved recording too.
	r, err := Open(path)
	must(t, err)
	defer r.Close()
	must(t, r.SeekTime(evs[len(evs)/2].Time))
	ev, err := r.Next()
	must(t, err)
	if ev.Time != evs[len(evs)/2].Time {
		t.Errorf("after seek got time %v, want %v", ev.Time, evs[len(evs)/2].Time)
	}
}

// openDevFull returns a Writer whose recording goes to /dev/full, where
// every write fails with ENOSPC.
func openDevFull(t *testing.T, opts Options) *Writer {
	t.Helper()
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	w := newWriter("/dev/full", f, nil, testHeader(), opts)
	t.Cleanup(func() { w.Close() })
	return w
}

func TestStickyWriteErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		trigger func(w *Writer) error
	}{
		{"explicit sync", Options{}, func(w *Writer) error {
			if err := w.Output([]byte("buffered")); err != nil {
				return fmt.Errorf("buffered Output failed early: %w", err)
			}
			return w.Sync()
		}},
		{"chunk larger than the buffer", Options{BufferSize: 16}, func(w *Writer) error {
			return w.Output(bytes.Repeat([]byte("x"), 4096))
		}},
		{"background flusher", Options{FlushInterval: time.Millisecond}, func(w *Writer) error {
			deadline := time.Now().Add(10 * time.Second)
			for w.Err() == nil {
				if time.Now().After(deadline) {
					return errors.New("the flusher never reported the error")
				}
				time.Sleep(time.Millisecond)
			}
			return w.Err()
		}},
		{"close", Options{}, func(w *Writer) error {
			_, err := w.Close()
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := openDevFull(t, tc.opts)
			first := tc.trigger(w)
			if !errors.Is(first, ErrWriteFailed) || !errors.Is(first, syscall.ENOSPC) {
				t.Fatalf("error = %v, want ErrWriteFailed wrapping ENOSPC", first)
			}
			if !strings.HasPrefix(first.Error(), "recorder: ") {
				t.Errorf("error %q does not start with the package name", first)
			}
			later := []error{
				w.Err(),
				w.Output([]byte("more")),
				w.Input([]byte("keys")),
				w.Resize(100, 30),
				w.Sync(),
			}
			_, cerr := w.Close()
			later = append(later, cerr)
			for i, err := range later {
				if err != first {
					t.Errorf("later call %d returned %v, want the sticky %v", i, err, first)
				}
			}
		})
	}
}

func TestWriteAfterClose(t *testing.T) {
	clock := newFakeClock()
	w, _ := newTestWriter(t, clock, Options{})
	must(t, w.Output([]byte("x")))
	s1, err := w.Close()
	must(t, err)
	s2, err := w.Close()
	if err != nil || s1 != s2 {
		t.Errorf("second Close = %+v, %v; want %+v, nil", s2, err, s1)
	}
	for _, err := range []error{w.Output([]byte("y")), w.Input([]byte("y")), w.Resize(1, 1), w.Sync()} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("write after Close = %v, want ErrClosed", err)
		}
	}
	if err := w.Resize(0, 5); err == nil {
		t.Error("Resize(0, 5) accepted")
	}
}

func TestBackgroundFlushWithoutSync(t *testing.T) {
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, Options{FlushInterval: time.Millisecond, IndexInterval: time.Second})
	clock.Advance(2 * time.Second)
	must(t, w.Output([]byte("flushed-by-ticker")))
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(path)
		must(t, err)
		idx, err := os.ReadFile(path + IndexSuffix)
		must(t, err)
		if bytes.Contains(data, []byte("flushed-by-ticker")) && len(idx) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording not flushed while open: %q, index %q", data, idx)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	must(t, os.WriteFile(notDir, nil, 0o600))
	tests := []struct {
		name    string
		dir     string
		wantErr bool
	}{
		{"writable", dir, false},
		{"missing", filepath.Join(dir, "missing"), true},
		{"not a directory", notDir, true},
		{"proc is not writable", "/proc", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckWritable(tc.dir)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CheckWritable(%s) = %v, wantErr %v", tc.dir, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrWriteFailed) {
				t.Errorf("error %v does not match ErrWriteFailed", err)
			}
			entries, _ := os.ReadDir(tc.dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".jumpgate-probe") {
					t.Errorf("probe file %s left behind", e.Name())
				}
			}
		})
	}
}
