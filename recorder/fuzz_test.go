package recorder

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the streaming parser and the file
// reader. Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v does not match ErrMalformed", err)
			}
			return
		}
		h := d.Header()
		if err := h.validate(); err != nil {
			t.Fatalf("Parse accepted an invalid header: %v", err)
		}
		var evs []Event
		var streamErr error
		for {
			ev, err := d.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Next error %v does not match ErrMalformed", err)
				}
				streamErr = err
				break
			}
			if n := len(evs); n > 0 && ev.Time < evs[n-1].Time {
				t.Fatalf("event times go backwards: %v after %v", ev.Time, evs[n-1].Time)
			}
			if ev.Type == EventResize {
				if _, _, ok := ev.Size(); !ok {
					t.Fatalf("accepted resize %q", ev.Data)
				}
			}
			evs = append(evs, ev)
		}

		// Encoding what was parsed and parsing it again is a fixed point.
		enc := encodeAll(t, h, evs)
		d2, err := Parse(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("re-parse of the encoding: %v\n%q", err, enc)
		}
		var evs2 []Event
		for {
			ev, err := d2.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("re-parse of the encoding: %v\n%q", err, enc)
			}
			evs2 = append(evs2, ev)
		}
		if !slices.Equal(evs, evs2) || d2.Truncated() {
			t.Fatalf("round trip changed the events:\n%q\n%q", evs, evs2)
		}
		if enc2 := encodeAll(t, d2.Header(), evs2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point:\n%q\n%q", enc, enc2)
		}
		if streamErr != nil {
			return
		}

		// The file reader agrees with the stream, and Export writes the
		// same clean encoding.
		path := filepath.Join(t.TempDir(), "f.cast")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path)
		if err != nil {
			t.Fatalf("Open failed where Parse succeeded: %v", err)
		}
		defer r.Close()
		var fileEvs []Event
		for {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Reader.Next failed where Parse succeeded: %v", err)
			}
			fileEvs = append(fileEvs, ev)
		}
		if !slices.Equal(evs, fileEvs) || r.Truncated != d.Truncated() {
			t.Fatalf("Reader and Parse disagree: %q (truncated %v) vs %q (truncated %v)", fileEvs, r.Truncated, evs, d.Truncated())
		}
		var exported bytes.Buffer
		if err := Export(&exported, path); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if !bytes.Equal(exported.Bytes(), enc) {
			t.Fatalf("Export differs from the encoding:\n%q\n%q", exported.Bytes(), enc)
		}
	})
}

func encodeAll(t *testing.T, h Header, evs []Event) []byte {
	t.Helper()
	enc, err := appendHeader(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		enc = appendEvent(enc, ev)
	}
	return enc
}
