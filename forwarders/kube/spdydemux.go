package kube

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/moby/spdystream/spdy"
)

// ErrSPDYFraming is returned when a SPDY/3.1 exec stream is not one the
// forwarder can follow. Unlike a WebSocket stream, whose recording just
// stops, a SPDY exec that cannot be followed is closed: nothing is passed
// on unrecorded.
var ErrSPDYFraming = errors.New("kube: cannot follow the SPDY exec stream")

// Remote-command SPDY stream types (the streamType header of SYN_STREAM).
const (
	spdyStdin  = "stdin"
	spdyStdout = "stdout"
	spdyStderr = "stderr"
	spdyError  = "error"
	spdyResize = "resize"
)

const (
	// spdyFrameHeader is the size of SPDY's common frame header, which
	// ends with the 24-bit length of the frame's payload.
	spdyFrameHeader = 8
	// maxSPDYFrame bounds a frame held back until it is whole (SPDY
	// allows 16 MiB; kubectl and the kubelet write at most 32 KiB).
	maxSPDYFrame = 4 << 20
	// maxSPDYStreams bounds the streams of one exec (kubectl opens five).
	maxSPDYStreams = 64
	// maxSPDYHeaderBlock bounds a decompressed header block, and
	// maxSPDYHeaders its entries (kubectl sends two or three).
	maxSPDYHeaderBlock = 64 << 10
	maxSPDYHeaders     = 256
)

// SPDY/3 control frame types whose payload the demuxer checks before the
// framer reads it (the framer allocates whatever lengths a frame claims).
const (
	spdySynStream = 1
	spdySynReply  = 2
	spdySettings  = 4
	spdyHeaders   = 8
)

// spdyStreams maps stream ids to their stream types. Both directions of
// one connection share it: the client creates the streams, the server
// writes on them. It is guarded by the owner's lock.
type spdyStreams struct {
	types     map[spdy.StreamId]string
	errStream spdy.StreamId // the client's error stream, 0 if none yet
}

func newSPDYStreams() *spdyStreams {
	return &spdyStreams{types: map[spdy.StreamId]string{}}
}

// spdyDemux follows one direction of a SPDY/3.1 connection carrying the
// remote-command protocol (k8s.io/apimachinery's httpstream/spdy, which
// uses github.com/moby/spdystream, whose framer this uses too). It collects
// whole frames (their length is in the common header), has the framer
// parse each (keeping the direction's header-decompression state) and
// requires the framer to consume exactly the frame, so that the peer's
// framer, reading the same bytes, sees the same frames. SYN_STREAM frames
// name the stream types; DATA frames go to emit with their stream's type.
type spdyDemux struct {
	streams *spdyStreams
	emit    func(streamType string, data []byte)

	framer  *spdy.Framer
	src     bytes.Reader // the frame being parsed
	pending []byte       // bytes of an incomplete frame
	err     error

	// The direction's header blocks decompressed a second time, ahead of
	// the framer, to check the lengths they claim (hdrSrc holds what the
	// decompressor has not consumed yet, as the framer's reader does).
	hdrSrc bytes.Buffer
	hdrZ   io.ReadCloser
}

func newSPDYDemux(streams *spdyStreams, emit func(streamType string, data []byte)) *spdyDemux {
	d := &spdyDemux{streams: streams, emit: emit}
	// NewFramer fails only if zlib cannot set up its writer, which it
	// never uses here.
	f, err := spdy.NewFramer(io.Discard, &d.src)
	if err != nil {
		d.err = fmt.Errorf("%w: %w", ErrSPDYFraming, err)
	}
	d.framer = f
	return d
}

func (d *spdyDemux) fail(format string, args ...any) error {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrSPDYFraming, fmt.Sprintf(format, args...))
	}
	return d.err
}

// Feed follows p and returns the bytes of the frames it completed, which
// may now be passed on (a new slice; an incomplete frame stays behind).
// On an error it returns the whole frames before the bad one with it;
// after the first error it returns that error for everything.
func (d *spdyDemux) Feed(p []byte) ([]byte, error) {
	if d.err != nil {
		return nil, d.err
	}
	d.pending = append(d.pending, p...)
	var whole []byte
	for len(d.pending) >= spdyFrameHeader {
		n := spdyFrameHeader + (int(d.pending[5])<<16 | int(d.pending[6])<<8 | int(d.pending[7]))
		if n > maxSPDYFrame {
			return whole, d.fail("a frame of %d bytes", n)
		}
		if len(d.pending) < n {
			break
		}
		if err := d.frame(d.pending[:n]); err != nil {
			return whole, err
		}
		whole = append(whole, d.pending[:n]...)
		d.pending = d.pending[n:]
	}
	if len(d.pending) == 0 {
		d.pending = nil // let a large frame's buffer go
	}
	return whole, nil
}

// Buffered is the number of bytes of an incomplete frame held back.
func (d *spdyDemux) Buffered() int { return len(d.pending) }

func (d *spdyDemux) frame(b []byte) error {
	if err := d.precheck(b); err != nil {
		return err
	}
	d.src.Reset(b)
	fr, err := d.framer.ReadFrame()
	if err != nil {
		return d.fail("frame: %v", err)
	}
	if d.src.Len() != 0 {
		return d.fail("the framer read %d of a %d-byte frame", len(b)-d.src.Len(), len(b))
	}
	switch f := fr.(type) {
	case *spdy.SynStreamFrame:
		if _, dup := d.streams.types[f.StreamId]; dup {
			return d.fail("stream %d opened twice", f.StreamId)
		}
		if len(d.streams.types) >= maxSPDYStreams {
			return d.fail("more than %d streams", maxSPDYStreams)
		}
		typ := headerValue(f.Headers, "streamType")
		d.streams.types[f.StreamId] = typ
		if typ == spdyError && d.streams.errStream == 0 {
			d.streams.errStream = f.StreamId
		}
	case *spdy.DataFrame:
		typ, ok := d.streams.types[f.StreamId]
		if !ok {
			return d.fail("data on stream %d, which was never opened", f.StreamId)
		}
		if len(f.Data) > 0 {
			d.emit(typ, f.Data)
		}
	}
	return nil
}

// precheck refuses control frames that would make the framer allocate
// more than the frame holds: SETTINGS whose count disagrees with its
// length, and header blocks whose decompressed entries claim more bytes
// than are there, too many entries, upper-case or repeated names.
func (d *spdyDemux) precheck(b []byte) error {
	if b[0]&0x80 == 0 {
		return nil // DATA: the framer allocates the frame's own length
	}
	typ := int(b[2])<<8 | int(b[3])
	payload := b[spdyFrameHeader:]
	var fixed int
	switch typ {
	case spdySettings:
		if len(payload) < 4 || uint64(len(payload)) != 4+8*uint64(binary.BigEndian.Uint32(payload)) {
			return d.fail("SETTINGS of %d bytes with a different count", len(payload))
		}
		return nil
	case spdySynStream:
		fixed = 10
	case spdySynReply, spdyHeaders:
		fixed = 4
	default:
		return nil
	}
	if len(payload) < fixed {
		return d.fail("control frame %d of %d bytes", typ, len(payload))
	}
	if err := d.checkHeaderBlock(payload[fixed:]); err != nil {
		return d.fail("header block: %v", err)
	}
	return nil
}

func (d *spdyDemux) checkHeaderBlock(block []byte) error {
	d.hdrSrc.Write(block)
	if d.hdrZ == nil {
		z, err := zlib.NewReaderDict(&d.hdrSrc, spdyHeaderDictionary)
		if err != nil {
			return err
		}
		d.hdrZ = z
	}
	r := &io.LimitedReader{R: d.hdrZ, N: maxSPDYHeaderBlock}
	var word [4]byte
	next := func() (uint32, error) {
		if _, err := io.ReadFull(r, word[:]); err != nil {
			return 0, err
		}
		return binary.BigEndian.Uint32(word[:]), nil
	}
	field := func() (string, error) {
		n, err := next()
		if err != nil {
			return "", err
		}
		if int64(n) > r.N {
			return "", fmt.Errorf("a field of %d bytes", n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf), nil
	}
	num, err := next()
	if err != nil {
		return err
	}
	if num > maxSPDYHeaders {
		return fmt.Errorf("%d headers", num)
	}
	seen := make(map[string]bool, num)
	for range num {
		name, err := field()
		if err != nil {
			return err
		}
		if name != strings.ToLower(name) || seen[name] {
			return fmt.Errorf("header name %q upper-case or repeated", name)
		}
		seen[name] = true
		if _, err := field(); err != nil {
			return err
		}
	}
	return nil
}

// headerValue looks a header up whatever the case of its name (SPDY
// sends names in lower case).
func headerValue(h map[string][]string, name string) string {
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// spdyGate is the reading side of one direction of a SPDY exec: it reads
// from r, feeds the demuxer (under mu, which the demuxers of both
// directions and the recorder share) and returns only the bytes of whole
// frames the demuxer has parsed and recorded. On a framing error it
// returns the whole frames before the bad one, then calls abort, which
// closes the exec, and returns the error; a stream that ends inside a
// frame is a framing error too.
type spdyGate struct {
	r     io.Reader
	d     *spdyDemux
	mu    *sync.Mutex
	count *int64 // bytes read, under mu
	abort func(error)

	buf     []byte
	out     []byte
	err     error
	aborted bool
}

func (g *spdyGate) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.err != nil {
			if errors.Is(g.err, ErrSPDYFraming) && !g.aborted {
				g.aborted = true
				g.abort(g.err)
			}
			return 0, g.err
		}
		if g.buf == nil {
			g.buf = make([]byte, 32<<10)
		}
		n, err := g.r.Read(g.buf)
		if n > 0 {
			g.mu.Lock()
			*g.count += int64(n)
			out, ferr := g.d.Feed(g.buf[:n])
			g.mu.Unlock()
			g.out = out
			if ferr != nil {
				g.err = ferr
				continue
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && g.d.Buffered() > 0 {
				err = g.d.fail("the stream ended inside a frame (%d bytes held back)", g.d.Buffered())
			}
			g.err = err
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// spdyErrorFrame is a DATA frame that ends stream id with a remote-command
// Failure Status carrying msg: what kubectl prints when the exec ends.
func spdyErrorFrame(id spdy.StreamId, msg string) ([]byte, error) {
	var b bytes.Buffer
	f, err := spdy.NewFramer(&b, nil)
	if err != nil {
		return nil, fmt.Errorf("kube: spdy framer: %w", err)
	}
	status, err := json.Marshal(map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": "InternalError", "code": 500})
	if err != nil {
		return nil, fmt.Errorf("kube: status: %w", err)
	}
	if err := f.WriteFrame(&spdy.DataFrame{StreamId: id, Flags: spdy.DataFlagFin, Data: status}); err != nil {
		return nil, fmt.Errorf("kube: spdy frame: %w", err)
	}
	return b.Bytes(), nil
}
