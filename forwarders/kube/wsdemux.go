package kube

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrStreamFraming is returned by wsDemux when a WebSocket stream is not
// one it can follow (malformed frames, compression, oversized messages).
// The stream is still relayed unchanged; only its recording stops.
var ErrStreamFraming = errors.New("kube: cannot follow the stream's framing")

// Kubernetes remote-command channels.
const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanError  = 3
	chanResize = 4
	chanClose  = 255 // v5: the payload names a channel the peer closed
)

// maxBufferedMessage bounds a message wsDemux holds whole (base64 text,
// resize and error messages).
const maxBufferedMessage = 1 << 20

// wsDemux follows one direction of a WebSocket stream that carries the
// channel.k8s.io protocols (RFC 6455 frames; each data message starts with
// its channel: a byte in the binary protocols, an ASCII digit followed by
// base64 in base64.channel.k8s.io). It is fed the bytes as they are
// relayed, in pieces of any size, and never changes them: it unmasks into
// its own buffer. Binary stdin/stdout/stderr data is passed to emit as it
// arrives; base64 messages and the resize and error channels whole.
type wsDemux struct {
	base64 bool
	emit   func(ch byte, data []byte)
	err    error

	hdr     [14]byte
	hn      int    // header bytes collected
	inFrame bool   // header complete, payload pending
	left    uint64 // payload bytes left in the frame
	opcode  byte
	fin     bool
	masked  bool
	mask    [4]byte
	maskPos int

	inMsg   bool // a data message is open (continuations may follow)
	gotChan bool // its channel is known
	ch      byte
	whole   bool // the message is buffered whole
	buf     []byte
	scratch []byte
}

func (d *wsDemux) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrStreamFraming, fmt.Sprintf(format, args...))
	}
}

// Feed follows p. After the first error it ignores everything.
func (d *wsDemux) Feed(p []byte) error {
	for len(p) > 0 && d.err == nil {
		if !d.inFrame {
			p = d.header(p)
			continue
		}
		n := len(p)
		if uint64(n) > d.left {
			n = int(d.left)
		}
		d.payload(p[:n])
		p = p[n:]
		d.left -= uint64(n)
		if d.left == 0 {
			d.endFrame()
		}
	}
	return d.err
}

// header collects a frame header from p and returns the rest of p.
func (d *wsDemux) header(p []byte) []byte {
	need := 2
	for {
		if d.hn >= 2 {
			need = 2
			switch d.hdr[1] & 0x7f {
			case 126:
				need += 2
			case 127:
				need += 8
			}
			if d.hdr[1]&0x80 != 0 {
				need += 4
			}
		}
		if d.hn >= need || len(p) == 0 {
			break
		}
		d.hdr[d.hn] = p[0]
		d.hn++
		p = p[1:]
	}
	if d.hn < need {
		return p
	}
	b0, b1 := d.hdr[0], d.hdr[1]
	d.fin, d.opcode, d.masked = b0&0x80 != 0, b0&0x0f, b1&0x80 != 0
	length := uint64(b1 & 0x7f)
	off := 2
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(d.hdr[2:4]))
		off = 4
	case 127:
		length = binary.BigEndian.Uint64(d.hdr[2:10])
		off = 10
		if length>>63 != 0 {
			d.fail("frame length %d", length)
			return p
		}
	}
	if d.masked {
		copy(d.mask[:], d.hdr[off:off+4])
	}
	d.maskPos = 0
	d.hn = 0
	if b0&0x70 != 0 {
		d.fail("reserved bits set (compressed frames are not supported)")
		return p
	}
	switch {
	case d.opcode >= 8:
		if d.opcode > 10 || !d.fin || length > 125 {
			d.fail("bad control frame (opcode %d, length %d)", d.opcode, length)
			return p
		}
	case d.opcode == 0:
		if !d.inMsg {
			d.fail("continuation outside a message")
			return p
		}
	case d.opcode == 1 || d.opcode == 2:
		if d.inMsg {
			d.fail("new message inside a fragmented one")
			return p
		}
		d.inMsg, d.gotChan, d.whole, d.buf = true, false, d.base64, d.buf[:0]
	default:
		d.fail("reserved opcode %d", d.opcode)
		return p
	}
	d.left = length
	d.inFrame = true
	if length == 0 {
		d.endFrame()
	}
	return p
}

func (d *wsDemux) payload(p []byte) {
	if d.opcode >= 8 {
		return // ping, pong, close: nothing to record
	}
	if d.masked {
		d.scratch = append(d.scratch[:0], p...)
		for i := range d.scratch {
			d.scratch[i] ^= d.mask[d.maskPos&3]
			d.maskPos++
		}
		p = d.scratch
	}
	if !d.gotChan {
		if len(p) == 0 {
			return
		}
		d.ch, d.gotChan, p = p[0], true, p[1:]
		if d.base64 {
			if d.ch < '0' || d.ch > '9' {
				d.fail("base64 channel %q", d.ch)
				return
			}
			d.ch -= '0'
		}
		if d.ch == chanResize || d.ch == chanError {
			d.whole = true
		}
	}
	if !d.whole {
		if len(p) > 0 {
			d.emit(d.ch, p)
		}
		return
	}
	if len(d.buf)+len(p) > maxBufferedMessage {
		d.fail("message on channel %d larger than %d bytes", d.ch, maxBufferedMessage)
		return
	}
	d.buf = append(d.buf, p...)
}

func (d *wsDemux) endFrame() {
	d.inFrame = false
	if d.opcode >= 8 || !d.fin {
		return
	}
	d.inMsg = false
	if !d.gotChan || !d.whole {
		return
	}
	data := d.buf
	if d.base64 {
		dec := make([]byte, base64.StdEncoding.DecodedLen(len(data)))
		n, err := base64.StdEncoding.Decode(dec, data)
		if err != nil {
			d.fail("base64 on channel %d: %v", d.ch, err)
			return
		}
		data = dec[:n]
	}
	if len(data) > 0 {
		d.emit(d.ch, data)
	}
}
