package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// Stream is a bidirectional byte stream. CloseWrite is used when available
// (TCP connections, SSH channels) so a half-close reaches the far side.
type Stream interface {
	io.ReadWriteCloser
}

type closeWriter interface{ CloseWrite() error }

// CloseWrite half-closes s if it can, else does nothing (the full close at
// the end of Pipe covers it).
func CloseWrite(s any) error {
	if cw, ok := s.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Counts are the bytes moved in each direction.
type Counts struct {
	AtoB, BtoA int64
}

// Pipe copies a→b and b→a until both directions have reached EOF or ctx
// ends, then closes both streams. It returns the byte counts and the first
// error that was not a normal end of stream.
func Pipe(ctx context.Context, a, b Stream) (Counts, error) {
	var c Counts
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	stop := context.AfterFunc(ctx, func() {
		a.Close()
		b.Close()
	})
	defer stop()
	copyHalf := func(dst, src Stream, n *int64) {
		defer wg.Done()
		written, err := io.Copy(dst, src)
		*n = written
		if err == nil || isClosed(err) {
			err = nil
		}
		// Pass the EOF on; the other direction keeps going.
		if cerr := CloseWrite(dst); cerr != nil && err == nil && !isClosed(cerr) {
			err = cerr
		}
		errs <- err
	}
	wg.Add(2)
	go copyHalf(b, a, &c.AtoB)
	go copyHalf(a, b, &c.BtoA)
	wg.Wait()
	a.Close()
	b.Close()
	close(errs)
	var first error
	for err := range errs {
		if err != nil && first == nil {
			first = err
		}
	}
	if ctx.Err() != nil && first == nil {
		first = context.Cause(ctx)
	}
	return c, first
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
}
