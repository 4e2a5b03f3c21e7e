package recordings

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jumpgate/jumpgate/recorder"
)

// ErrNotFound is wrapped when a recording does not exist (or its name
// leaves the store).
var ErrNotFound = errors.New("recordings: no such recording")

// Store creates and opens recordings by name: a relative slash path such as
// "2026-01-02/SESSION.cast", the name kept in the session index.
type Store interface {
	// Create starts recording name. The Writer fails (recorder.ErrWriteFailed)
	// as soon as bytes cannot be made durable, so a fail-closed caller can
	// end the session.
	Create(ctx context.Context, name string, h recorder.Header, opts recorder.Options) (*recorder.Writer, error)
	// Open reads what has been stored of name so far: the whole recording
	// once it is closed, the current prefix while it is being written.
	Open(ctx context.Context, name string) (*recorder.Reader, error)
	// Hash returns the hex SHA-256 and size of the stored bytes of name.
	Hash(ctx context.Context, name string) (string, int64, error)
	// Remove deletes name (a recording of an operation that never ran).
	Remove(ctx context.Context, name string) error
	// CheckWritable proves a new recording could be written now (matching
	// recorder.ErrWriteFailed when not).
	CheckWritable(ctx context.Context) error
}

// Dir keeps recordings as files (with their seek index) under a directory.
type Dir struct {
	Path string
}

var _ Store = Dir{}

// path resolves name inside the directory; a name that would leave it is
// not found.
func (d Dir) path(name string) (string, error) {
	if name == "" || d.Path == "" {
		return "", fmt.Errorf("recordings: %q: %w", name, ErrNotFound)
	}
	p := filepath.Join(d.Path, filepath.Clean("/"+name))
	if !strings.HasPrefix(p, filepath.Clean(d.Path)+string(filepath.Separator)) {
		return "", fmt.Errorf("recordings: %q: %w", name, ErrNotFound)
	}
	return p, nil
}

// Create creates the recording file.
func (d Dir) Create(_ context.Context, name string, h recorder.Header, opts recorder.Options) (*recorder.Writer, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, fmt.Errorf("recordings: create: %w: %w", recorder.ErrWriteFailed, err)
	}
	return recorder.Create(p, h, opts)
}

// Open opens the recording file.
func (d Dir) Open(_ context.Context, name string) (*recorder.Reader, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	r, err := recorder.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("recordings: %q: %w: %w", name, ErrNotFound, err)
	}
	return r, err
}

// Hash hashes the recording file as it is on disk.
func (d Dir) Hash(_ context.Context, name string) (string, int64, error) {
	p, err := d.path(name)
	if err != nil {
		return "", 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return "", 0, fmt.Errorf("recordings: hash: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("recordings: hash: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Remove deletes the recording file and its index.
func (d Dir) Remove(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	_ = os.Remove(p + recorder.IndexSuffix)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("recordings: remove: %w", err)
	}
	return nil
}

// CheckWritable writes, fsyncs and removes a probe file in the directory.
func (d Dir) CheckWritable(context.Context) error { return recorder.CheckWritable(d.Path) }

// ReadAll returns the raw bytes of the recording file.
func (d Dir) ReadAll(_ context.Context, name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("recordings: %q: %w: %w", name, ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("recordings: read %s: %w", name, err)
	}
	return b, nil
}
