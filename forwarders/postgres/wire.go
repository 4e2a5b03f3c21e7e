package postgres

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Errors of the wire layer.
var (
	ErrTooLarge   = errors.New("postgres: message over the size limit")
	ErrBadLength  = errors.New("postgres: message length field is invalid")
	ErrBadMessage = errors.New("postgres: malformed message")
)

// msgReader reads typed protocol messages; the body is valid until the
// next call.
type msgReader struct {
	r   *bufio.Reader
	max int
	hdr [5]byte
	buf []byte
}

func newMsgReader(r io.Reader, max int) *msgReader {
	return &msgReader{r: bufio.NewReaderSize(r, 32*1024), max: max}
}

func (m *msgReader) next() (byte, []byte, error) {
	if _, err := io.ReadFull(m.r, m.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(m.hdr[1:])))
	if n < 4 {
		return 0, nil, fmt.Errorf("%w: %d for message %q", ErrBadLength, n, m.hdr[0])
	}
	n -= 4
	if n > m.max {
		return 0, nil, fmt.Errorf("%w: %d bytes for message %q (limit %d)", ErrTooLarge, n, m.hdr[0], m.max)
	}
	if cap(m.buf) < n {
		m.buf = make([]byte, n, max(n, 2*cap(m.buf)))
	}
	b := m.buf[:n]
	if _, err := io.ReadFull(m.r, b); err != nil {
		return 0, nil, err
	}
	// Give back memory after one huge message.
	if cap(m.buf) > 1<<20 && n < 1<<16 {
		m.buf = nil
	}
	return m.hdr[0], b, nil
}

// writeMsg appends one message to w.
func writeMsg(w *bufio.Writer, typ byte, body []byte) error {
	// The header goes straight into w's buffer (a local array would
	// escape through w.Write: one allocation per message).
	h := binary.BigEndian.AppendUint32(append(w.AvailableBuffer(), typ), uint32(len(body)+4))
	if _, err := w.Write(h); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// cstr reads a NUL-terminated string at b.
func cstr(b []byte) (string, []byte, error) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], nil
		}
	}
	return "", nil, fmt.Errorf("%w: unterminated string", ErrBadMessage)
}

func u16(b []byte) (int, []byte, error) {
	if len(b) < 2 {
		return 0, nil, fmt.Errorf("%w: short", ErrBadMessage)
	}
	return int(binary.BigEndian.Uint16(b)), b[2:], nil
}

// parseMsg is a Parse ('P') message.
type parseMsg struct{ name, query string }

func decodeParse(b []byte) (parseMsg, error) {
	var p parseMsg
	var err error
	if p.name, b, err = cstr(b); err != nil {
		return p, err
	}
	if p.query, _, err = cstr(b); err != nil {
		return p, err
	}
	return p, nil
}

// bindMsg is the part of a Bind ('B') message the forwarder needs.
type bindMsg struct {
	portal, stmt string
	results      []int16
}

func decodeBind(b []byte) (bindMsg, error) {
	var m bindMsg
	var err error
	if m.portal, b, err = cstr(b); err != nil {
		return m, err
	}
	if m.stmt, b, err = cstr(b); err != nil {
		return m, err
	}
	n, b, err := u16(b)
	if err != nil || len(b) < 2*n {
		return m, fmt.Errorf("%w: bind formats", ErrBadMessage)
	}
	b = b[2*n:]
	np, b, err := u16(b)
	if err != nil {
		return m, err
	}
	for i := 0; i < np; i++ {
		if len(b) < 4 {
			return m, fmt.Errorf("%w: bind parameter", ErrBadMessage)
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l > 0 {
			if len(b) < l {
				return m, fmt.Errorf("%w: bind parameter", ErrBadMessage)
			}
			b = b[l:]
		}
	}
	nr, b, err := u16(b)
	if err != nil || len(b) < 2*nr {
		return m, fmt.Errorf("%w: bind result formats", ErrBadMessage)
	}
	m.results = make([]int16, nr)
	for i := range m.results {
		m.results[i] = int16(binary.BigEndian.Uint16(b[2*i:]))
	}
	return m, nil
}

// field is one column of a RowDescription.
type field struct {
	name     string
	tableOID uint32
	attnum   int16
	typeOID  uint32
	format   int16
}

func decodeRowDesc(b []byte) ([]field, error) {
	n, b, err := u16(b)
	if err != nil {
		return nil, err
	}
	fs := make([]field, 0, n)
	for i := 0; i < n; i++ {
		var f field
		if f.name, b, err = cstr(b); err != nil {
			return nil, err
		}
		if len(b) < 18 {
			return nil, fmt.Errorf("%w: row description", ErrBadMessage)
		}
		f.tableOID = binary.BigEndian.Uint32(b)
		f.attnum = int16(binary.BigEndian.Uint16(b[4:]))
		f.typeOID = binary.BigEndian.Uint32(b[6:])
		f.format = int16(binary.BigEndian.Uint16(b[16:]))
		b = b[18:]
		fs = append(fs, f)
	}
	return fs, nil
}

// errorFields builds an ErrorResponse/NoticeResponse body.
func errorBody(severity, code, msg string) []byte {
	var b []byte
	for _, f := range []struct {
		t byte
		v string
	}{{'S', severity}, {'V', severity}, {'C', code}, {'M', msg}} {
		b = append(b, f.t)
		b = append(b, f.v...)
		b = append(b, 0)
	}
	return append(b, 0)
}

// errorMessage returns the M field of an ErrorResponse body.
func errorMessage(b []byte) (code, msg string) {
	for len(b) > 1 {
		t := b[0]
		s, rest, err := cstr(b[1:])
		if err != nil {
			return code, msg
		}
		switch t {
		case 'C':
			code = s
		case 'M':
			msg = s
		}
		b = rest
	}
	return code, msg
}
