//go:build linux

package localshell

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The terminal-mode opcodes of RFC 4254 section 8 (and IUTF8, RFC 8160)
// mapped onto Linux termios, as sshd's tty_parse_modes does. Opcodes with
// no Linux equivalent (VDSUSP, VFLUSH, VSTATUS) and the line speeds are
// ignored, as sshd ignores modes its system lacks.

var ccIndex = map[uint8]int{
	1: unix.VINTR, 2: unix.VQUIT, 3: unix.VERASE, 4: unix.VKILL, 5: unix.VEOF,
	6: unix.VEOL, 7: unix.VEOL2, 8: unix.VSTART, 9: unix.VSTOP, 10: unix.VSUSP,
	12: unix.VREPRINT, 13: unix.VWERASE, 14: unix.VLNEXT, 16: unix.VSWTC, 18: unix.VDISCARD,
}

type termField uint8

const (
	fieldI termField = iota
	fieldO
	fieldC
	fieldL
)

type modeBit struct {
	field termField
	bit   uint32
}

var modeBits = map[uint8]modeBit{
	30: {fieldI, unix.IGNPAR}, 31: {fieldI, unix.PARMRK}, 32: {fieldI, unix.INPCK},
	33: {fieldI, unix.ISTRIP}, 34: {fieldI, unix.INLCR}, 35: {fieldI, unix.IGNCR},
	36: {fieldI, unix.ICRNL}, 37: {fieldI, unix.IUCLC}, 38: {fieldI, unix.IXON},
	39: {fieldI, unix.IXANY}, 40: {fieldI, unix.IXOFF}, 41: {fieldI, unix.IMAXBEL},
	42: {fieldI, unix.IUTF8},
	50: {fieldL, unix.ISIG}, 51: {fieldL, unix.ICANON}, 52: {fieldL, unix.XCASE},
	53: {fieldL, unix.ECHO}, 54: {fieldL, unix.ECHOE}, 55: {fieldL, unix.ECHOK},
	56: {fieldL, unix.ECHONL}, 57: {fieldL, unix.NOFLSH}, 58: {fieldL, unix.TOSTOP},
	59: {fieldL, unix.IEXTEN}, 60: {fieldL, unix.ECHOCTL}, 61: {fieldL, unix.ECHOKE},
	62: {fieldL, unix.PENDIN},
	70: {fieldO, unix.OPOST}, 71: {fieldO, unix.OLCUC}, 72: {fieldO, unix.ONLCR},
	73: {fieldO, unix.OCRNL}, 74: {fieldO, unix.ONOCR}, 75: {fieldO, unix.ONLRET},
	90: {fieldC, unix.CS7}, 91: {fieldC, unix.CS8}, 92: {fieldC, unix.PARENB},
	93: {fieldC, unix.PARODD},
}

// applyModes sets the encoded terminal modes on the terminal t.
func applyModes(t *unix.Termios, modes []termMode) {
	for _, m := range modes {
		if i, ok := ccIndex[m.Op]; ok {
			c := m.Arg
			if c == 255 || c > 255 { // 255 is "disabled" on the wire
				c = 0 // _POSIX_VDISABLE on Linux
			}
			t.Cc[i] = uint8(c)
			continue
		}
		b, ok := modeBits[m.Op]
		if !ok {
			continue
		}
		f := map[termField]*uint32{fieldI: &t.Iflag, fieldO: &t.Oflag, fieldC: &t.Cflag, fieldL: &t.Lflag}[b.field]
		if m.Arg != 0 {
			*f |= b.bit
		} else {
			*f &^= b.bit
		}
	}
}

// setTermModes applies modes to the tty's line discipline.
func setTermModes(tty *os.File, modes []termMode) error {
	if len(modes) == 0 {
		return nil
	}
	rc, err := tty.SyscallConn()
	if err != nil {
		return fmt.Errorf("localshell: terminal modes: %w", err)
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			opErr = err
			return
		}
		applyModes(t, modes)
		opErr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return fmt.Errorf("localshell: terminal modes: %w", err)
	}
	return nil
}
