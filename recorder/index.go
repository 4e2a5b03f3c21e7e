package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"
)

// The seek index is a sidecar file of JSON lines {"t":SECONDS,"off":OFFSET}:
// the event line starting at byte OFFSET of the recording has time SECONDS,
// and no earlier line has a later time. Checkpoints are strictly increasing
// in offset. The index is only a hint: a Reader checks every checkpoint it
// uses against the recording and scans from the start when it is missing,
// corrupt or wrong.

// maxIndexBytes bounds how much of an index file a Reader loads.
const maxIndexBytes = 64 << 20

type indexEntry struct {
	T   time.Duration
	Off int64
}

func appendIndexEntry(dst []byte, e indexEntry) []byte {
	dst = append(dst, `{"t":`...)
	dst = appendTime(dst, e.T)
	dst = append(dst, `,"off":`...)
	dst = strconv.AppendInt(dst, e.Off, 10)
	return append(dst, '}', '\n')
}

// parseIndex parses index data. A last line without a newline (a crash
// prefix) is ignored; anything else malformed fails the whole index.
func parseIndex(data []byte) ([]indexEntry, error) {
	var entries []indexEntry
	for len(data) > 0 {
		line, rest, found := bytes.Cut(data, []byte{'\n'})
		if !found {
			break
		}
		data = rest
		var raw struct {
			T   *float64 `json:"t"`
			Off *int64   `json:"off"`
		}
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("index entry %d: %w", len(entries)+1, err)
		}
		if raw.T == nil || raw.Off == nil || !(*raw.T >= 0 && *raw.T <= maxSeconds) || *raw.Off <= 0 {
			return nil, fmt.Errorf("index entry %d: missing or out-of-range field", len(entries)+1)
		}
		e := indexEntry{T: time.Duration(math.Round(*raw.T*1e6)) * time.Microsecond, Off: *raw.Off}
		if n := len(entries); n > 0 && (e.T < entries[n-1].T || e.Off <= entries[n-1].Off) {
			return nil, fmt.Errorf("index entry %d: not after entry %d", n+1, n)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// loadIndex reads the index of the recording at path, keeping only the
// checkpoints inside the data range [start, end).
func loadIndex(path string, start, end int64) ([]indexEntry, error) {
	f, err := os.Open(path + IndexSuffix)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIndexBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxIndexBytes {
		return nil, errors.New("index too large")
	}
	entries, err := parseIndex(data)
	if err != nil {
		return nil, err
	}
	for i, e := range entries {
		if e.Off < start || e.Off >= end {
			if e.Off < start {
				return nil, fmt.Errorf("index entry %d: offset %d inside the header", i+1, e.Off)
			}
			return entries[:i], nil
		}
	}
	return entries, nil
}
