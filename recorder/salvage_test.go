package recorder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// fullAfter is a file that takes limit bytes and then fails with ENOSPC,
// keeping what fit, as a file system does when it fills mid-write.
type fullAfter struct {
	*os.File
	left int
}

func (f *fullAfter) Write(p []byte) (int, error) {
	if len(p) <= f.left {
		f.left -= len(p)
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:f.left])
	f.left = 0
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

// TestDiskFullLeavesValidPrefix: when the disk fills mid-line, Close cuts
// the recording back to its last complete event and the Summary's SHA-256
// is that of the file as it is on disk.
func TestDiskFullLeavesValidPrefix(t *testing.T) {
	for _, limit := range []int{150, 1000, 5000, 70000} {
		path := filepath.Join(t.TempDir(), "full.cast")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		h := testHeader()
		h.Version = 2
		w := newWriter(path, &fullAfter{File: f, left: limit}, nil, h, Options{BufferSize: 512})
		var werr error
		for i := 0; i < 2000 && werr == nil; i++ {
			werr = w.Output(bytes.Repeat([]byte("line of output\r\n"), 8))
		}
		sum, cerr := w.Close()
		if !errors.Is(cerr, ErrWriteFailed) || !errors.Is(cerr, syscall.ENOSPC) {
			t.Fatalf("limit %d: Close = %v, want the ENOSPC write failure", limit, cerr)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fh := sha256.Sum256(data)
		if sum.SHA256 != hex.EncodeToString(fh[:]) || sum.Bytes != int64(len(data)) {
			t.Fatalf("limit %d: summary %s/%d, file %x/%d", limit, sum.SHA256, sum.Bytes, fh, len(data))
		}
		if len(data) > limit || (len(data) > 0 && data[len(data)-1] != '\n') {
			t.Fatalf("limit %d: %d bytes kept, last byte %q", limit, len(data), data[len(data)-1:])
		}
		if len(data) == 0 {
			continue // not even the header fitted
		}
		d, err := Parse(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("limit %d: %v", limit, err)
		}
		for {
			if _, err := d.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("limit %d: %v", limit, err)
			}
		}
		if d.Truncated() {
			t.Fatalf("limit %d: truncated last line kept", limit)
		}
	}
}
