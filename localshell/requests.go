package localshell

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// The payloads of the session requests of RFC 4254 section 6 and RFC 4335,
// which arrive from the user through the bastion and are untrusted bytes.

// window is a terminal size in characters and pixels.
type window struct {
	Cols, Rows, Width, Height uint16
}

// termMode is one encoded terminal mode (RFC 4254 section 8).
type termMode struct {
	Op  uint8
	Arg uint32
}

// ptyRequest is a parsed "pty-req".
type ptyRequest struct {
	Term  string
	Win   window
	Modes []termMode
}

// maxTermLen bounds the TERM value taken from a pty-req.
const maxTermLen = 256

var errBadPayload = errors.New("localshell: malformed request payload")

// clamp16 maps a 32-bit size from the wire onto a termios field.
func clamp16(v uint32) uint16 {
	if v > 0xffff {
		return 0xffff
	}
	return uint16(v)
}

func parsePtyRequest(payload []byte) (ptyRequest, error) {
	var m struct {
		Term                      string
		Cols, Rows, Width, Height uint32
		Modes                     string
	}
	if err := gossh.Unmarshal(payload, &m); err != nil {
		return ptyRequest{}, fmt.Errorf("%w: pty-req: %w", errBadPayload, err)
	}
	if len(m.Term) > maxTermLen || strings.ContainsAny(m.Term, "\x00=") {
		return ptyRequest{}, fmt.Errorf("%w: pty-req: bad TERM", errBadPayload)
	}
	modes, err := parseTermModes([]byte(m.Modes))
	if err != nil {
		return ptyRequest{}, err
	}
	return ptyRequest{
		Term:  m.Term,
		Win:   window{Cols: clamp16(m.Cols), Rows: clamp16(m.Rows), Width: clamp16(m.Width), Height: clamp16(m.Height)},
		Modes: modes,
	}, nil
}

// parseTermModes decodes the encoded terminal modes: opcode bytes 1..159
// each followed by a uint32 argument, ended by TTY_OP_END (0). As in sshd,
// an opcode of 160 or more stops the parse (its argument's size is unknown)
// and the modes read so far are kept.
func parseTermModes(b []byte) ([]termMode, error) {
	var modes []termMode
	for len(b) > 0 {
		op := b[0]
		if op == 0 || op >= 160 {
			break
		}
		if len(b) < 5 {
			return nil, fmt.Errorf("%w: truncated terminal mode %d", errBadPayload, op)
		}
		modes = append(modes, termMode{Op: op, Arg: binary.BigEndian.Uint32(b[1:5])})
		b = b[5:]
	}
	return modes, nil
}

// encodeTermModes is the inverse of parseTermModes.
func encodeTermModes(modes []termMode) []byte {
	b := make([]byte, 0, 5*len(modes)+1)
	for _, m := range modes {
		b = append(b, m.Op)
		b = binary.BigEndian.AppendUint32(b, m.Arg)
	}
	return append(b, 0)
}

func parseWindowChange(payload []byte) (window, error) {
	var m struct{ Cols, Rows, Width, Height uint32 }
	if err := gossh.Unmarshal(payload, &m); err != nil {
		return window{}, fmt.Errorf("%w: window-change: %w", errBadPayload, err)
	}
	return window{Cols: clamp16(m.Cols), Rows: clamp16(m.Rows), Width: clamp16(m.Width), Height: clamp16(m.Height)}, nil
}

func parseEnv(payload []byte) (name, value string, err error) {
	var m struct{ Name, Value string }
	if err := gossh.Unmarshal(payload, &m); err != nil {
		return "", "", fmt.Errorf("%w: env: %w", errBadPayload, err)
	}
	return m.Name, m.Value, nil
}

// parseString decodes the single-string payload of "exec", "subsystem" and
// "signal".
func parseString(payload []byte) (string, error) {
	var m struct{ Value string }
	if err := gossh.Unmarshal(payload, &m); err != nil {
		return "", fmt.Errorf("%w: %w", errBadPayload, err)
	}
	return m.Value, nil
}

// parseCommand decodes an "exec" payload. A NUL cannot reach execve.
func parseCommand(payload []byte) (string, error) {
	cmd, err := parseString(payload)
	if err != nil {
		return "", err
	}
	if strings.IndexByte(cmd, 0) >= 0 {
		return "", fmt.Errorf("%w: exec: command contains NUL", errBadPayload)
	}
	return cmd, nil
}

// envAllowed reports whether a client may set the variable, the way sshd's
// AcceptEnv would with "LANG LC_* TZ COLORTERM TERM". Everything else is
// refused: variables such as LD_PRELOAD, BASH_ENV, PATH or HOME would let a
// user change what runs or where.
func envAllowed(name, value string) bool {
	if strings.IndexByte(value, 0) >= 0 {
		return false
	}
	switch name {
	case "LANG", "TZ", "COLORTERM", "TERM":
		return true
	}
	rest, ok := strings.CutPrefix(name, "LC_")
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if (r < 'A' || r > 'Z') && r != '_' {
			return false
		}
	}
	return true
}
