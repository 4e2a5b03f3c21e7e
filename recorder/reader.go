package recorder

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Decoder parses an asciicast v2 stream event by event, holding at most one
// line (MaxLineBytes) in memory.
type Decoder struct {
	br        *bufio.Reader
	name      string // for errors
	header    Header
	off       int64 // offset of the next line
	line      int   // number of the next line; 0 when unknown
	last      time.Duration
	truncated bool
	err       error // sticky
	buf       []byte
}

// Parse reads and validates the header line of r and returns a Decoder
// positioned at the first event.
func Parse(r io.Reader) (*Decoder, error) { return parse(r, "") }

func parse(r io.Reader, name string) (*Decoder, error) {
	d := newDecoder(r, name, 0, 1, 0)
	line, complete, err := d.readLine()
	if err == io.EOF {
		return nil, &SyntaxError{Path: name, Line: 1, Msg: "empty recording: no header"}
	}
	if err != nil {
		return nil, err
	}
	h, herr := decodeHeader(line)
	if herr != nil {
		msg := "invalid header"
		if !complete {
			msg = "invalid or truncated header"
		}
		return nil, &SyntaxError{Path: name, Line: 1, Msg: msg, Err: herr}
	}
	d.header = h
	return d, nil
}

func newDecoder(r io.Reader, name string, off int64, line int, last time.Duration) *Decoder {
	return &Decoder{br: bufio.NewReaderSize(r, 64<<10), name: name, off: off, line: line, last: last}
}

// Header returns the parsed header.
func (d *Decoder) Header() Header { return d.header }

// Truncated reports whether the stream ended with an incomplete line that is
// not a valid event: the prefix a crash leaves. Valid once Next returned
// io.EOF.
func (d *Decoder) Truncated() bool { return d.truncated }

// Next returns the next event, io.EOF at the end of the stream (also after a
// truncated last line), or an error: a *SyntaxError (matching ErrMalformed)
// for malformed content, or the read error. Errors are sticky.
func (d *Decoder) Next() (Event, error) {
	if d.err != nil {
		return Event{}, d.err
	}
	ev, err := d.next()
	if err != nil {
		d.err = err
	}
	return ev, err
}

func (d *Decoder) next() (Event, error) {
	off, lineNo := d.off, d.line
	line, complete, err := d.readLine()
	if err != nil {
		return Event{}, err
	}
	ev, perr := decodeEvent(line)
	if perr != nil {
		if !complete {
			d.truncated = true
			return Event{}, io.EOF
		}
		return Event{}, &SyntaxError{Path: d.name, Line: lineNo, Offset: off, Msg: "invalid event", Err: perr}
	}
	if ev.Time < d.last {
		return Event{}, &SyntaxError{Path: d.name, Line: lineNo, Offset: off,
			Msg: fmt.Sprintf("event time %v is before the previous event's %v", ev.Time, d.last)}
	}
	d.last = ev.Time
	return ev, nil
}

// readLine returns the next line without its newline; complete is false for
// a last line that has no newline. It returns io.EOF when no bytes are left.
func (d *Decoder) readLine() (line []byte, complete bool, err error) {
	d.buf = d.buf[:0]
	off, lineNo := d.off, d.line
	for {
		frag, err := d.br.ReadSlice('\n')
		if len(d.buf)+len(frag) > MaxLineBytes+1 {
			return nil, false, &SyntaxError{Path: d.name, Line: lineNo, Offset: off,
				Msg: fmt.Sprintf("line longer than %d bytes", MaxLineBytes)}
		}
		d.buf = append(d.buf, frag...)
		switch {
		case err == nil:
			d.off += int64(len(d.buf))
			if d.line > 0 {
				d.line++
			}
			return d.buf[:len(d.buf)-1], true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if len(d.buf) == 0 {
				return nil, false, io.EOF
			}
			d.off += int64(len(d.buf))
			return d.buf, false, nil
		default:
			return nil, false, fmt.Errorf("recorder: read: %w", err)
		}
	}
}

// Reader reads a recording file. It reads a snapshot: the file's size at
// Open. It is not safe for concurrent use.
type Reader struct {
	// Header is the recording's parsed header.
	Header Header
	// Truncated is true when the file ends with an incomplete line (the
	// prefix a crash leaves); that line is skipped.
	Truncated bool

	f         io.ReaderAt
	closer    io.Closer // nil: nothing to close
	path      string
	dataStart int64 // offset of the first event line
	end       int64 // end of the valid data
	dec       *Decoder
	peeked    *Event
	at        time.Duration // playback position: last event read or seek target

	index       []indexEntry
	indexLoaded bool
}

// Open opens the recording at path and parses its header. Events are read
// with Next; a truncated last line is detected at once and reported in
// Truncated. A missing or malformed header is an error (matching
// ErrMalformed).
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recorder: open: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("recorder: open: %w", err)
	}
	r, err := open(f, path, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader reads a recording of size bytes from src (a recording kept
// outside a file, such as chunks loaded from a database); name only labels
// errors. There is no seek index: SeekTime scans. Like Open, it tolerates a
// crash-truncated last line.
func NewReader(name string, src io.ReaderAt, size int64) (*Reader, error) {
	r, err := open(src, name, size)
	if err != nil {
		return nil, err
	}
	r.indexLoaded = true
	return r, nil
}

func open(f io.ReaderAt, path string, size int64) (*Reader, error) {
	hd, err := parse(io.NewSectionReader(f, 0, size), path)
	if err != nil {
		return nil, err
	}
	r := &Reader{Header: hd.header, f: f, path: path, dataStart: hd.off, end: size}
	if err := r.checkTail(); err != nil {
		return nil, err
	}
	r.dec = newDecoder(io.NewSectionReader(f, r.dataStart, r.end-r.dataStart), path, r.dataStart, 2, 0)
	return r, nil
}

// checkTail finds whether the file ends in an incomplete line that is not a
// valid event, and if so excludes it from the data range.
func (r *Reader) checkTail() error {
	if r.end == r.dataStart {
		return nil
	}
	var last [1]byte
	if _, err := r.f.ReadAt(last[:], r.end-1); err != nil {
		return fmt.Errorf("recorder: read: %w", err)
	}
	if last[0] == '\n' {
		return nil
	}
	// Find the last newline, reading backwards in blocks; the header's
	// newline at dataStart-1 bounds the search.
	buf := make([]byte, 64<<10)
	nl := r.dataStart - 1
	for pos := r.end; pos > r.dataStart; {
		n := min(int64(len(buf)), pos-r.dataStart)
		pos -= n
		if _, err := r.f.ReadAt(buf[:n], pos); err != nil {
			return fmt.Errorf("recorder: read: %w", err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			nl = pos + int64(i)
			break
		}
	}
	tailLen := r.end - (nl + 1)
	if tailLen <= MaxLineBytes {
		tail := make([]byte, tailLen)
		if _, err := r.f.ReadAt(tail, nl+1); err != nil {
			return fmt.Errorf("recorder: read: %w", err)
		}
		if _, err := decodeEvent(tail); err == nil {
			return nil // a complete last event without a final newline
		}
	}
	r.Truncated = true
	r.end = nl + 1
	return nil
}

// Close closes the file (nothing for a NewReader).
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// Next returns the next event, or io.EOF after the last one. Errors are
// those of Decoder.Next.
func (r *Reader) Next() (Event, error) {
	if r.peeked != nil {
		ev := *r.peeked
		r.peeked = nil
		r.at = ev.Time
		return ev, nil
	}
	ev, err := r.dec.Next()
	if err == nil {
		r.at = ev.Time
	}
	return ev, err
}

// SeekTime positions the reader so that Next returns the first event whose
// time is at or after t (io.EOF when there is none). It jumps to the nearest
// earlier checkpoint of the sidecar index and scans from there; without a
// usable index it scans from the first event.
func (r *Reader) SeekTime(t time.Duration) error {
	if !r.indexLoaded {
		r.indexLoaded = true
		r.index, _ = loadIndex(r.path, r.dataStart, r.end) // unusable index: scan
	}
	r.peeked = nil
	r.at = t
	// The last checkpoint strictly before t: every event before it is
	// then before t too.
	for i := len(r.index) - 1; i >= 0; i-- {
		e := r.index[i]
		if e.T >= t {
			continue
		}
		if ok, err := r.seekFrom(e.Off, 0, e.T, t, true); ok || err != nil {
			return err
		}
		r.index = nil // the index does not match the recording
		break
	}
	_, err := r.seekFrom(r.dataStart, 2, 0, t, false)
	return err
}

// seekFrom scans for the first event at or after t starting at the line at
// off. With verify, the line at off must be an event at exactly time at
// that follows a newline; ok is false if it is not.
func (r *Reader) seekFrom(off int64, line int, at, t time.Duration, verify bool) (ok bool, err error) {
	if verify {
		var prev [1]byte
		if _, err := r.f.ReadAt(prev[:], off-1); err != nil || prev[0] != '\n' {
			return false, nil
		}
	}
	dec := newDecoder(io.NewSectionReader(r.f, off, r.end-off), r.path, off, line, at)
	for first := true; ; first = false {
		ev, err := dec.Next()
		if verify && first && (err != nil || ev.Time != at) {
			return false, nil
		}
		if err == io.EOF {
			r.dec = dec
			return true, nil
		}
		if err != nil {
			return true, err
		}
		if ev.Time >= t {
			r.dec, r.peeked = dec, &ev
			return true, nil
		}
	}
}
