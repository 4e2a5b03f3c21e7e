package recordings

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/recorder"
)

// Chunk is one stored piece of a recording.
type Chunk struct {
	Seq  int
	Data []byte
}

// ChunkStore is the database side of Chunked (pgstore.Store implements it).
type ChunkStore interface {
	// AppendChunk stores chunk seq of a recording; storing the same bytes
	// again under the same seq succeeds (a retried write).
	AppendChunk(ctx context.Context, name string, seq int, data []byte) error
	// RecordingChunks returns the chunks of name in order.
	RecordingChunks(ctx context.Context, name string) ([]Chunk, error)
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

// load concatenates the stored chunks of name.
func (c Chunked) load(ctx context.Context, name string) ([]byte, error) {
	chunks, err := c.Chunks.RecordingChunks(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("recordings: %s: %w", name, err)
	}
	if len(chunks) == 0 {
		return nil, fmt.Errorf("recordings: %q: %w", name, ErrNotFound)
	}
	var b bytes.Buffer
	for i, ch := range chunks {
		if ch.Seq != i {
			// A gap: only the prefix before it is the recording.
			break
		}
		b.Write(ch.Data)
	}
	return b.Bytes(), nil
}

// Open reads the chunks stored so far.
func (c Chunked) Open(ctx context.Context, name string) (*recorder.Reader, error) {
	b, err := c.load(ctx, name)
	if err != nil {
		return nil, err
	}
	return recorder.NewReader(name, bytes.NewReader(b), int64(len(b)))
}

// Hash hashes the stored bytes.
func (c Chunked) Hash(ctx context.Context, name string) (string, int64, error) {
	b, err := c.load(ctx, name)
	if err != nil {
		return "", 0, err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), int64(len(b)), nil
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
