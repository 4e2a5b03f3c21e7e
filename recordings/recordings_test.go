package recordings

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/recorder"
)

// memChunks is an in-memory ChunkStore; fail makes AppendChunk fail.
type memChunks struct {
	mu     sync.Mutex
	chunks map[string][][]byte
	fail   error
	reads  int
}

func (m *memChunks) AppendChunk(_ context.Context, name string, seq int, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.chunks == nil {
		m.chunks = map[string][][]byte{}
	}
	cs := m.chunks[name]
	if seq != len(cs) {
		return errors.New("out of order")
	}
	m.chunks[name] = append(cs, bytes.Clone(data))
	return nil
}

func (m *memChunks) ChunkSizes(_ context.Context, name string) ([]ChunkSize, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ChunkSize
	for i, d := range m.chunks[name] {
		out = append(out, ChunkSize{Seq: i, Size: int64(len(d))})
	}
	return out, nil
}

func (m *memChunks) ReadChunks(_ context.Context, name string, from, to int) ([]Chunk, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	var out []Chunk
	for i, d := range m.chunks[name] {
		if i >= from && i < to {
			out = append(out, Chunk{Seq: i, Data: d})
		}
	}
	return out, nil
}

func (m *memChunks) DeleteChunks(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.chunks, name)
	return nil
}

func (m *memChunks) Ping(context.Context) error { return m.fail }

func export(t *testing.T, st Store, name string) string {
	t.Helper()
	r, err := st.Open(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var b strings.Builder
	if err := recorder.ExportReader(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestStores: both stores give back, while the recording runs, what was
// synced so far, and after Close the whole recording, hashed as the Writer
// hashed it.
func TestStores(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		st   Store
	}{
		{"dir", Dir{Path: t.TempDir()}},
		{"chunked", Chunked{Chunks: &memChunks{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const name = "2026-01-02/s1.cast"
			w, err := tc.st.Create(ctx, name, recorder.Header{Width: 80, Height: 24}, recorder.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Output([]byte("first line\r\n")); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := export(t, tc.st, name); !strings.Contains(got, "first line") {
				t.Fatalf("running recording: %q", got)
			}
			if err := w.Output([]byte("second line\r\n")); err != nil {
				t.Fatal(err)
			}
			sum, err := w.Close()
			if err != nil {
				t.Fatal(err)
			}
			got := export(t, tc.st, name)
			if !strings.Contains(got, "second line") {
				t.Fatalf("closed recording: %q", got)
			}
			h, n, err := tc.st.Hash(ctx, name)
			if err != nil || h != sum.SHA256 || n != sum.Bytes {
				t.Fatalf("Hash = %s %d %v, Writer summary %s %d", h, n, err, sum.SHA256, sum.Bytes)
			}
			if err := tc.st.Remove(ctx, name); err != nil {
				t.Fatal(err)
			}
			if _, err := tc.st.Open(ctx, name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after Remove: %v", err)
			}
		})
	}
}

// TestChunkedFailsClosed: once a chunk cannot be stored the Writer fails
// with recorder.ErrWriteFailed, so a fail-closed session ends, and
// CheckWritable reports the database down.
func TestChunkedFailsClosed(t *testing.T) {
	db := &memChunks{}
	st := Chunked{Chunks: db}
	w, err := st.Create(context.Background(), "s.cast", recorder.Header{Width: 80, Height: 24}, recorder.Options{})
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("connection refused")
	db.mu.Lock()
	db.fail = down
	db.mu.Unlock()
	_ = w.Output([]byte("lost"))
	if err := w.Sync(); !errors.Is(err, recorder.ErrWriteFailed) || !errors.Is(err, down) {
		t.Fatalf("Sync with the database down: %v", err)
	}
	if err := w.Output([]byte("more")); !errors.Is(err, recorder.ErrWriteFailed) {
		t.Fatalf("Output after a failed chunk: %v", err)
	}
	_, _ = w.Close()
	if err := st.CheckWritable(context.Background()); !errors.Is(err, recorder.ErrWriteFailed) {
		t.Fatalf("CheckWritable with the database down: %v", err)
	}
}

// TestDirRefusesEscapes: a name that leaves the directory is not found.
func TestDirRefusesEscapes(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	for _, name := range []string{"", "../x.cast", "/../../etc/passwd"} {
		if _, err := d.Open(context.Background(), name); err == nil {
			t.Errorf("Open(%q) succeeded", name)
		}
	}
}

// TestChunkedLargeRecording: a recording of many chunks, bigger than one
// read window, reads back (export and hash) exactly as the same recording
// written to a file, fetched a window at a time rather than per chunk.
func TestChunkedLargeRecording(t *testing.T) {
	ctx := context.Background()
	db := &memChunks{}
	stores := []Store{Dir{Path: t.TempDir()}, Chunked{Chunks: db}}
	clock := func() time.Time { return time.Unix(1700000000, 0) }
	var ws []*recorder.Writer
	for _, st := range stores {
		w, err := st.Create(ctx, "big.cast", recorder.Header{Width: 80, Height: 24, Timestamp: 1700000000}, recorder.Options{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	line := []byte(strings.Repeat("0123456789abcdef", 64) + "\r\n")
	for i := 0; i < 3000; i++ {
		for _, w := range ws {
			if err := w.Output(line); err != nil {
				t.Fatal(err)
			}
			if i%50 == 49 {
				if err := w.Sync(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var sums []string
	for _, w := range ws {
		sum, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum.SHA256)
	}
	if n := len(db.chunks["big.cast"]); n < 50 {
		t.Fatalf("only %d chunks", n)
	}
	file, chunked := export(t, stores[0], "big.cast"), export(t, stores[1], "big.cast")
	if file != chunked {
		i := 0
		for i < len(file) && file[i] == chunked[i] {
			i++
		}
		t.Logf("first difference at %d: file %q chunked %q", i, file[max(0, i-40):i+40], chunked[max(0, i-40):i+40])
	}
	if file != chunked || len(file) < 3000*len(line) {
		t.Fatalf("chunked export differs from the file's (%d vs %d bytes)", len(chunked), len(file))
	}
	if db.reads >= len(db.chunks["big.cast"]) {
		t.Fatalf("%d reads for %d chunks: not windowed", db.reads, len(db.chunks["big.cast"]))
	}
	for i, st := range stores {
		if h, _, err := st.Hash(ctx, "big.cast"); err != nil || h != sums[i] {
			t.Fatalf("store %d: hash %s %v, writer %s", i, h, err, sums[i])
		}
	}
}
