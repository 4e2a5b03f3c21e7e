package recorder

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Export writes the recording at path to w as a clean asciicast v2 stream:
// the header and every event, re-encoded. For a truncated recording that is
// the valid prefix. The encoding is the Writer's, so exporting a complete
// recording made by Writer reproduces it byte for byte (and its SHA-256 and
// signature still verify). A malformed line stops the export with an error
// (matching ErrMalformed) after the events before it have been written.
func Export(w io.Writer, path string) error {
	r, err := Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	return ExportReader(w, r)
}

// ExportReader is Export from an open Reader, from its current position
// (the first event for a fresh one).
func ExportReader(w io.Writer, r *Reader) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	line, err := appendHeader(nil, r.Header)
	if err != nil {
		return err
	}
	for {
		if _, err := bw.Write(line); err != nil {
			return fmt.Errorf("recorder: export: %w", err)
		}
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ferr := bw.Flush(); ferr != nil {
				return fmt.Errorf("recorder: export: %w", ferr)
			}
			return err // already names the file
		}
		line = appendEvent(line[:0], ev)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("recorder: export: %w", err)
	}
	return nil
}
