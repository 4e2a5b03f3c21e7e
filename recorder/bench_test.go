package recorder

import (
	"bytes"
	"path/filepath"
	"testing"
)

// BenchmarkWriterOutput measures Output throughput (MB/s) for 32 KiB chunks
// of terminal-like output: ASCII text, escape sequences and multi-byte
// UTF-8, with chunk boundaries cutting runes.
func BenchmarkWriterOutput(b *testing.B) {
	line := []byte("\x1b[32muser@host\x1b[0m:~/src$ ls -la  drwxr-xr-x  grüße €  ✓\r\n")
	chunk := bytes.Repeat(line, 32<<10/len(line)+1)[:32<<10]
	w, err := Create(filepath.Join(b.TempDir(), "bench.cast"), Header{Width: 80, Height: 24}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Output(chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if _, err := w.Close(); err != nil {
		b.Fatal(err)
	}
}
