package recorder

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// ErrWriteFailed is matched (errors.Is) by every error a Writer returns after
// writing, flushing or syncing the recording failed, and by CheckWritable's
// errors. The error also wraps the cause (for example syscall.ENOSPC). Once a
// Writer has failed, every later call returns the same error, so a caller
// that fails closed can stop the session.
var ErrWriteFailed = errors.New("recorder: recording write failed")

// ErrClosed is returned by writes to a closed Writer.
var ErrClosed = errors.New("recorder: writer closed")

// Options tune a Writer. The zero value gives the documented defaults.
type Options struct {
	// Clock stamps events and the header; default time.Now. Event times
	// are Clock() minus the Clock() reading taken at Create, never
	// decreasing. The flush and fsync cadence uses the real time.
	Clock func() time.Time
	// FlushInterval is how often buffered data is written to the file;
	// default 100ms.
	FlushInterval time.Duration
	// SyncInterval is the least time between two background fsyncs;
	// default 1s. Close always fsyncs.
	SyncInterval time.Duration
	// BufferSize is the write buffer size; a fuller buffer is written out
	// at once. Default 64 KiB.
	BufferSize int
	// IndexInterval and IndexBytes: a seek checkpoint is added to the
	// sidecar index before the first event that is at least IndexInterval
	// of session time or IndexBytes of file after the previous checkpoint.
	// Defaults 10s and 1 MiB.
	IndexInterval time.Duration
	IndexBytes    int64
	// SyncObserver, when set, is told how long each sync of the recording
	// (fsync, or a chunk stored in a database) took: the recording write
	// latency metric.
	SyncObserver func(time.Duration)
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.BufferSize <= 0 {
		o.BufferSize = 64 << 10
	}
	if o.IndexInterval <= 0 {
		o.IndexInterval = 10 * time.Second
	}
	if o.IndexBytes <= 0 {
		o.IndexBytes = 1 << 20
	}
	return o
}

// Summary describes a closed recording.
type Summary struct {
	SHA256      string        // hex SHA-256 of the whole recording file as written
	Bytes       int64         // size of the recording file
	OutputBytes int64         // raw bytes passed to Output
	InputBytes  int64         // raw bytes passed to Input
	Duration    time.Duration // from Create to Close, by the Writer's clock
	Events      int64         // event lines written
}

// IndexSuffix is appended to a recording's path to name its seek index.
const IndexSuffix = ".idx"

// Sink is what a Writer writes a recording to: an *os.File, or a store that
// keeps the bytes elsewhere (chunks in a database). Write may buffer; Sync
// must make everything written so far durable (a crash after Sync returns
// leaves those bytes readable); Close releases the sink after a final Sync.
// Write and Sync may be called from different goroutines.
type Sink interface {
	io.Writer
	Sync() error
	Close() error
}

// file is what a Writer writes to: an *os.File in production.
type file = Sink

// stream holds an incomplete trailing UTF-8 sequence of one direction.
type stream struct {
	code  EventType
	pend  [utf8.UTFMax]byte
	npend int
	bytes int64
}

// Writer records one session as an asciicast v2 file while it runs. All
// methods are safe for concurrent use.
type Writer struct {
	path  string
	clock func() time.Time
	opts  Options
	start time.Time

	stop chan struct{}
	wg   sync.WaitGroup

	// syncMu is held shared while fsync runs outside mu, and exclusively
	// by Close, so files are never closed under a running fsync.
	syncMu sync.RWMutex

	mu       sync.Mutex
	f, idx   file
	bw, ibw  *bufio.Writer
	hash     hash.Hash
	size     int64 // bytes written to bw
	events   int64
	last     time.Duration // time of the last event
	ckT      time.Duration // last index checkpoint
	ckOff    int64
	out, in  stream
	line     []byte
	dirty    bool // bytes buffered since the last flush
	unsynced bool // bytes flushed since the last fsync
	err      error
	closed   bool

	closeOnce sync.Once
	summary   Summary
	closeErr  error
}

// Create creates the recording file at path (and its seek index at path +
// IndexSuffix) exclusively with mode 0600, creating missing parent
// directories with mode 0700, writes the header and fsyncs it. Header.Version
// is set to 2 and a zero Timestamp to the clock's time; Width and Height must
// be positive. The returned Writer must be closed.
func Create(path string, h Header, opts Options) (*Writer, error) {
	opts = opts.withDefaults()
	h.Version = 2
	if h.Timestamp == 0 {
		h.Timestamp = opts.Clock().Unix()
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("recorder: create %s: invalid header: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("recorder: create %s: %w: %w", path, ErrWriteFailed, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recorder: create %s: %w: %w", path, ErrWriteFailed, err)
	}
	idx, err := os.OpenFile(path+IndexSuffix, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("recorder: create %s: %w: %w", path+IndexSuffix, ErrWriteFailed, err)
	}
	w := newWriter(path, f, idx, h, opts)
	if err := w.Sync(); err != nil {
		w.Close()
		os.Remove(path)
		os.Remove(path + IndexSuffix)
		return nil, err
	}
	// Make the new directory entries durable. Best effort: some file
	// systems cannot fsync a directory, and the file data is already safe.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return w, nil
}

// NewWriter starts a Writer over sink, which receives the same bytes a
// recording file would, without a seek index; name only labels errors. It
// writes the header and syncs it. The returned Writer must be closed; it
// closes sink.
func NewWriter(name string, sink Sink, h Header, opts Options) (*Writer, error) {
	opts = opts.withDefaults()
	h.Version = 2
	if h.Timestamp == 0 {
		h.Timestamp = opts.Clock().Unix()
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("recorder: create %s: invalid header: %w", name, err)
	}
	w := newWriter(name, sink, nil, h, opts)
	if err := w.Sync(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// newWriter starts a Writer over already open files; idx may be nil (no
// index). The header is buffered, not yet flushed.
func newWriter(path string, f, idx file, h Header, opts Options) *Writer {
	opts = opts.withDefaults()
	w := &Writer{
		path:  path,
		clock: opts.Clock,
		opts:  opts,
		start: opts.Clock(),
		stop:  make(chan struct{}),
		f:     f,
		idx:   idx,
		bw:    bufio.NewWriterSize(f, opts.BufferSize),
		hash:  sha256.New(),
		out:   stream{code: EventOutput},
		in:    stream{code: EventInput},
	}
	if idx != nil {
		w.ibw = bufio.NewWriterSize(idx, 4096)
	}
	line, err := appendHeader(nil, h.sanitized())
	if err != nil {
		w.err = err
	} else {
		w.put(line)
	}
	w.ckOff = w.size
	w.wg.Add(1)
	go w.flusher()
	return w
}

// fail records the first error (sticky) and returns the sticky error.
func (w *Writer) fail(op string, err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("recorder: %s %s: %w: %w", op, w.path, ErrWriteFailed, err)
	}
	return w.err
}

// Err returns the sticky write error, or nil while the recording is healthy.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Output records bytes the session wrote to the terminal. An incomplete
// UTF-8 sequence at the end of p is held until the next Output call.
func (w *Writer) Output(p []byte) error { return w.write(&w.out, p) }

// Input records bytes the user typed. Like Output, it keeps UTF-8 sequences
// split across calls together.
func (w *Writer) Input(p []byte) error { return w.write(&w.in, p) }

// Resize records a terminal size change.
func (w *Writer) Resize(cols, rows int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if cols <= 0 || rows <= 0 || cols > maxDimension || rows > maxDimension {
		return fmt.Errorf("recorder: resize to %dx%d: size out of range", cols, rows)
	}
	t := w.now()
	w.line = appendEventStart(w.line[:0], t, EventResize)
	w.line = strconv.AppendInt(w.line, int64(cols), 10)
	w.line = append(w.line, 'x')
	w.line = strconv.AppendInt(w.line, int64(rows), 10)
	w.line = appendEventEnd(w.line)
	w.writeEvent(t, w.line)
	return w.err
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	return nil
}

// now returns the session time of a new event: never before the last one,
// truncated to microseconds (the precision of the file).
func (w *Writer) now() time.Duration {
	t := w.clock().Sub(w.start).Truncate(time.Microsecond)
	if t < w.last {
		t = w.last
	}
	w.last = t
	return t
}

func (w *Writer) write(st *stream, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	st.bytes += int64(len(p))
	// Complete a sequence held back from the previous call.
	var head []byte
	if st.npend > 0 {
		var buf [2 * utf8.UTFMax]byte
		n := copy(buf[:], st.pend[:st.npend])
		for len(p) > 0 && !utf8.FullRune(buf[:n]) {
			buf[n] = p[0]
			n++
			p = p[1:]
		}
		if !utf8.FullRune(buf[:n]) {
			st.npend = copy(st.pend[:], buf[:n])
			return nil
		}
		st.npend = 0
		head = buf[:n]
	}
	n := completePrefix(p)
	body, tail := p[:n], p[n:]
	if len(head)+len(body) > 0 {
		w.emit(st.code, head, body)
	}
	st.npend = copy(st.pend[:], tail)
	return w.err
}

// completePrefix returns the length of the longest prefix of p that does not
// end inside a UTF-8 sequence that later bytes could still complete.
func completePrefix(p []byte) int {
	for i := len(p) - 1; i >= 0 && i > len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if utf8.FullRune(p[i:]) {
				return len(p)
			}
			return i
		}
	}
	return len(p)
}

// emit writes head+body as one or more events (all at the same time), each
// carrying at most maxEventData bytes of body, split at rune starts.
func (w *Writer) emit(code EventType, head, body []byte) {
	t := w.now()
	for first := true; first || len(body) > 0; first = false {
		piece := body
		if len(piece) > maxEventData {
			cut := maxEventData
			for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(body[cut]); i++ {
				cut--
			}
			piece = body[:cut]
		}
		w.line = appendEventStart(w.line[:0], t, code)
		w.line = appendEscaped(w.line, head)
		w.line = appendEscaped(w.line, piece)
		w.line = appendEventEnd(w.line)
		if w.writeEvent(t, w.line) != nil {
			return
		}
		head, body = nil, body[len(piece):]
	}
}

// writeEvent adds an index checkpoint when one is due, then the event line.
func (w *Writer) writeEvent(t time.Duration, line []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.ibw != nil && (t-w.ckT >= w.opts.IndexInterval || w.size-w.ckOff >= w.opts.IndexBytes) {
		var buf [64]byte
		if _, err := w.ibw.Write(appendIndexEntry(buf[:0], indexEntry{T: t, Off: w.size})); err != nil {
			return w.fail("write index", err)
		}
		w.ckT, w.ckOff = t, w.size
	}
	w.events++
	return w.put(line)
}

func (w *Writer) put(line []byte) error {
	w.hash.Write(line)
	if _, err := w.bw.Write(line); err != nil {
		return w.fail("write", err)
	}
	w.size += int64(len(line))
	w.dirty = true
	return nil
}

func (w *Writer) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if !w.dirty {
		return nil
	}
	// The recording first: the index must never point past flushed data.
	if err := w.bw.Flush(); err != nil {
		return w.fail("flush", err)
	}
	if w.ibw != nil {
		if err := w.ibw.Flush(); err != nil {
			return w.fail("flush index", err)
		}
	}
	w.dirty = false
	w.unsynced = true
	return nil
}

func (w *Writer) syncFiles() error {
	if obs := w.opts.SyncObserver; obs != nil {
		start := time.Now()
		defer func() { obs(time.Since(start)) }()
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if w.idx != nil {
		if err := w.idx.Sync(); err != nil {
			return fmt.Errorf("fsync index: %w", err)
		}
	}
	return nil
}

// Sync writes out everything buffered and fsyncs the recording and its
// index now, without waiting for the background cadence.
func (w *Writer) Sync() error {
	w.syncMu.RLock()
	defer w.syncMu.RUnlock()
	w.mu.Lock()
	if err := w.usable(); err != nil {
		w.mu.Unlock()
		return err
	}
	err := w.flushLocked()
	w.unsynced = false
	w.mu.Unlock()
	if err != nil {
		return err
	}
	return w.syncResult(w.syncFiles())
}

func (w *Writer) syncResult(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		return w.fail("sync", err)
	}
	return w.err
}

// flusher writes buffered data out every FlushInterval and fsyncs when
// SyncInterval has passed since the last fsync. fsync runs without the lock
// so that a slow disk does not stall the session's writes.
func (w *Writer) flusher() {
	defer w.wg.Done()
	tick := time.NewTicker(w.opts.FlushInterval)
	defer tick.Stop()
	lastSync := time.Now()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		if w.flushLocked() != nil {
			w.mu.Unlock()
			return
		}
		doSync := w.unsynced && time.Since(lastSync) >= w.opts.SyncInterval
		if doSync {
			w.unsynced = false
		}
		w.mu.Unlock()
		if doSync {
			lastSync = time.Now()
			w.syncMu.RLock()
			err := w.syncResult(w.syncFiles())
			w.syncMu.RUnlock()
			if err != nil {
				return
			}
		}
	}
}

// Close writes any held-back partial UTF-8 sequence (as U+FFFD), flushes,
// fsyncs and closes the recording and its index, and returns the Summary.
// The Summary is filled in even when an error is returned. Close is
// idempotent; later calls return the same results.
func (w *Writer) Close() (Summary, error) {
	w.closeOnce.Do(func() {
		close(w.stop)
		w.wg.Wait()
		w.syncMu.Lock()
		defer w.syncMu.Unlock()
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, st := range []*stream{&w.out, &w.in} {
			if st.npend > 0 && w.err == nil {
				pend := st.pend[:st.npend]
				st.npend = 0
				w.emit(st.code, nil, pend)
			}
		}
		end := w.clock().Sub(w.start)
		if end < w.last {
			end = w.last
		}
		w.closed = true
		if w.flushLocked() == nil {
			if err := w.syncFiles(); err != nil {
				w.fail("close", err)
			}
		}
		if err := w.f.Close(); err != nil {
			w.fail("close", err)
		}
		if w.idx != nil {
			if err := w.idx.Close(); err != nil {
				w.fail("close index", err)
			}
		}
		sum, size := hex.EncodeToString(w.hash.Sum(nil)), w.size
		if w.err != nil && w.path != "" {
			// A failed write (a full disk) may have left part of the
			// buffer, and so a partial last line, in the file: cut the
			// file back to its last complete event, so that it is a valid
			// asciicast prefix, and sum what is really on disk, so that
			// the signed hash matches the file.
			// When that fails too, no hash is given rather than one of
			// bytes that are not in the file.
			var err error
			if sum, size, err = salvage(w.path); err != nil {
				sum, size = "", 0
			}
		}
		w.summary = Summary{
			SHA256:      sum,
			Bytes:       size,
			OutputBytes: w.out.bytes,
			InputBytes:  w.in.bytes,
			Duration:    end,
			Events:      w.events,
		}
		w.closeErr = w.err
	})
	return w.summary, w.closeErr
}

// CheckWritable proves that dir accepts a new recording by creating,
// writing, fsyncing and removing a probe file in it. Call it before starting
// a session that must be recorded: on a full disk it fails (matching
// ErrWriteFailed) and the session can be refused up front.
func CheckWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".jumpgate-probe-*")
	if err != nil {
		return fmt.Errorf("recorder: probe %s: %w: %w", dir, ErrWriteFailed, err)
	}
	name := f.Name()
	var probe [4096]byte // one file-system block, so space is really allocated
	_, err = f.Write(probe[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("recorder: probe %s: %w: %w", dir, ErrWriteFailed, err)
	}
	return nil
}

// salvage truncates the recording at path after its last complete line
// (the header at least stays when it reached the disk), fsyncs it and
// returns the SHA-256 and size of what remains.
func salvage(path string) (string, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !st.Mode().IsRegular() {
		return "", 0, fmt.Errorf("recorder: salvage %s: not a regular file", path)
	}
	end := st.Size()
	// Scan backwards for the last newline.
	buf := make([]byte, 64<<10)
	keep := int64(0)
	for off := end; off > 0 && keep == 0; {
		n := int64(len(buf))
		if off < n {
			n = off
		}
		off -= n
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return "", 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep = off + int64(i) + 1
		}
	}
	if keep != end {
		if err := f.Truncate(keep); err != nil {
			return "", 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return "", 0, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, keep)); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), keep, nil
}
