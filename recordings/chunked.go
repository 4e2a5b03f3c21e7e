package recordings

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/recorder"
)

// Chunk is one stored piece of a recording.
type Chunk struct {
	Seq  int
	Data []byte
}

// ChunkSize is the size of one stored chunk.
type ChunkSize struct {
	Seq  int
	Size int64
}

// ChunkStore is the database side of Chunked (pgstore.Store implements it).
type ChunkStore interface {
	// AppendChunk stores chunk seq of a recording; storing the same bytes
	// again under the same seq succeeds (a retried write).
	AppendChunk(ctx context.Context, name string, seq int, data []byte) error
	// ChunkSizes returns the byte size of every chunk of name, in seq order
	// (Seq set, Data nil), without reading the data.
	ChunkSizes(ctx context.Context, name string) ([]ChunkSize, error)
	// ReadChunks returns the chunks of name with from <= Seq < to, in order.
	ReadChunks(ctx context.Context, name string, from, to int) ([]Chunk, error)
	// DeleteChunks removes every chunk of name.
	DeleteChunks(ctx context.Context, name string) error
	// Ping is a cheap round trip to the database.
	Ping(ctx context.Context) error
}

// Chunked keeps recordings as ordered chunks in a shared database. Every
// sync of the Writer (SyncInterval, default 250ms here) stores the bytes
// written since the previous one as the next chunk, so what a crash leaves is
// the recording up to the last stored chunk, readable from every replica.
type Chunked struct {
	Chunks ChunkStore
	// WriteTimeout bounds one chunk write; default 10s. A chunk that cannot
	// be stored in time fails the Writer (fail-closed sessions end).
	WriteTimeout time.Duration
}

var _ Store = Chunked{}

// Create starts a recording whose bytes go to the database.
func (c Chunked) Create(_ context.Context, name string, h recorder.Header, opts recorder.Options) (*recorder.Writer, error) {
	if name == "" {
		return nil, fmt.Errorf("recordings: create: empty name: %w", recorder.ErrWriteFailed)
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 250 * time.Millisecond
	}
	timeout := c.WriteTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return recorder.NewWriter(name, &chunkSink{db: c.Chunks, name: name, timeout: timeout}, h, opts)
}

// chunkSink buffers what the Writer flushes and stores it as one chunk per
// Sync.
type chunkSink struct {
	db      ChunkStore
	name    string
	timeout time.Duration

	syncMu sync.Mutex // serialises Syncs so chunks keep their order
	seq    int        // next chunk number; guarded by syncMu

	mu      sync.Mutex
	pending []byte
}

func (s *chunkSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.pending = append(s.pending, p...)
	s.mu.Unlock()
	return len(p), nil
}

func (s *chunkSink) Sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	data := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(data) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.db.AppendChunk(ctx, s.name, s.seq, data); err != nil {
		// Keep the bytes: a later Sync retries the same chunk (the store
		// accepts an identical retry), though the Writer has failed anyway.
		s.mu.Lock()
		s.pending = append(data, s.pending...)
		s.mu.Unlock()
		return fmt.Errorf("recordings: store chunk %d of %s: %w", s.seq, s.name, err)
	}
	s.seq++
	return nil
}

func (s *chunkSink) Close() error { return s.Sync() }

// readWindow is how many bytes of chunks one database round trip fetches
// while a recording is read.
const readWindow = 1 << 20

// chunkReader reads a recording from its chunks on demand, a window of
// chunks per query, so replaying a large recording does not hold it all in
// memory. It serves the prefix of chunks numbered 0, 1, 2... without a gap
// that was stored when it was opened.
type chunkReader struct {
	ctx  context.Context
	db   ChunkStore
	name string
	offs []int64 // offs[i] is where chunk i starts; offs[len] is the size
	// The cached window: the bytes of whole chunks starting at wOff.
	mu   sync.Mutex
	wOff int64
	win  []byte
}

func (c Chunked) openChunks(ctx context.Context, name string) (*chunkReader, error) {
	sizes, err := c.Chunks.ChunkSizes(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("recordings: %s: %w", name, err)
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("recordings: %q: %w", name, ErrNotFound)
	}
	offs := []int64{0}
	for i, cs := range sizes {
		if cs.Seq != i {
			break // a gap: only the prefix before it is the recording
		}
		offs = append(offs, offs[i]+cs.Size)
	}
	return &chunkReader{ctx: ctx, db: c.Chunks, name: name, offs: offs}, nil
}

func (r *chunkReader) size() int64 { return r.offs[len(r.offs)-1] }

// ReadAt implements io.ReaderAt.
func (r *chunkReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size() {
			return n, io.EOF
		}
		if pos < r.wOff || pos >= r.wOff+int64(len(r.win)) {
			if err := r.fetch(pos); err != nil {
				return n, err
			}
		}
		n += copy(p[n:], r.win[pos-r.wOff:])
	}
	return n, nil
}

// fetch loads the window of chunks holding pos: from its chunk on, up to
// readWindow bytes (at least one chunk).
func (r *chunkReader) fetch(pos int64) error {
	first := sort.Search(len(r.offs)-1, func(i int) bool { return r.offs[i+1] > pos })
	last := first + 1
	for last < len(r.offs)-1 && r.offs[last+1]-r.offs[first] <= readWindow {
		last++
	}
	chunks, err := r.db.ReadChunks(r.ctx, r.name, first, last)
	if err != nil {
		return fmt.Errorf("recordings: read %s: %w", r.name, err)
	}
	var win []byte
	for i, ch := range chunks {
		if ch.Seq != first+i || int64(len(ch.Data)) != r.offs[ch.Seq+1]-r.offs[ch.Seq] {
			return fmt.Errorf("recordings: read %s: chunk %d changed while read", r.name, first+i)
		}
		win = append(win, ch.Data...)
	}
	if len(chunks) != last-first {
		return fmt.Errorf("recordings: read %s: chunks %d-%d missing", r.name, first, last-1)
	}
	r.wOff, r.win = r.offs[first], win
	return nil
}

// Open reads the chunks stored so far, a window at a time.
func (c Chunked) Open(ctx context.Context, name string) (*recorder.Reader, error) {
	cr, err := c.openChunks(ctx, name)
	if err != nil {
		return nil, err
	}
	return recorder.NewReader(name, cr, cr.size())
}

// Hash hashes the stored bytes.
func (c Chunked) Hash(ctx context.Context, name string) (string, int64, error) {
	cr, err := c.openChunks(ctx, name)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(cr, 0, cr.size()))
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Remove deletes the chunks.
func (c Chunked) Remove(ctx context.Context, name string) error {
	if err := c.Chunks.DeleteChunks(ctx, name); err != nil {
		return fmt.Errorf("recordings: remove %s: %w", name, err)
	}
	return nil
}

// CheckWritable is a cheap round trip to the database.
func (c Chunked) CheckWritable(ctx context.Context) error {
	if err := c.Chunks.Ping(ctx); err != nil {
		return fmt.Errorf("recordings: %w: %w", recorder.ErrWriteFailed, err)
	}
	return nil
}

// ImportChunkSize is the size of the chunks Import stores.
const ImportChunkSize = 1 << 20

// Import stores a whole recording (read from a file) as chunks under name,
// for `jumpgate storage migrate`. Importing the same bytes again is a no-op.
func (c Chunked) Import(ctx context.Context, name string, data []byte) error {
	for seq := 0; seq == 0 || len(data) > 0; seq++ {
		n := min(len(data), ImportChunkSize)
		if err := c.Chunks.AppendChunk(ctx, name, seq, data[:n]); err != nil {
			return fmt.Errorf("recordings: import %s: %w", name, err)
		}
		data = data[n:]
	}
	return nil
}
