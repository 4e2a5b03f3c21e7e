package termline

// maxParamDigits bounds every numeric parameter of a CSI sequence without a
// private marker that the emulator sees (so at most 999); private sequences
// ("\x1b[?1049h") carry mode numbers, not counts, and pass untouched. The emulator honours counts literally: one
// "\x1b[999999999b" (repeat the last character) costs it minutes of CPU, so
// a user could stall the bastion with a single printf. Screens are smaller
// than 1000 cells a side, so cursor motion and erasure keep their meaning;
// a repeat is still amplified up to 999 times, about as costly as printing
// those characters.
const maxParamDigits = 3

// Where the output filter is in the escape-sequence grammar.
const (
	clampText = iota
	clampEsc
	clampParams
)

// clampState follows CSI sequences across Output calls.
type clampState struct {
	state   int
	digits  int  // digits in the current parameter so far
	first   bool // the next byte is the first after the introducer
	private bool // the sequence has a private marker (<, =, >, ?)
	utf8Rem int  // continuation bytes still expected in a UTF-8 character
}

// clamp returns p with the digits beyond maxParamDigits of every CSI
// parameter removed. It returns p itself, without copying, when nothing had
// to be removed, which is nearly always.
func (c *clampState) clamp(p []byte) []byte {
	var out []byte
	for i, b := range p {
		drop := false
		switch c.state {
		case clampText:
			switch {
			case b >= 0x80 && b <= 0xbf && c.utf8Rem > 0:
				c.utf8Rem--
			case b >= 0xc2 && b <= 0xdf:
				c.utf8Rem = 1
			case b >= 0xe0 && b <= 0xef:
				c.utf8Rem = 2
			case b >= 0xf0 && b <= 0xf4:
				c.utf8Rem = 3
			case b == 0x1b:
				c.state, c.utf8Rem = clampEsc, 0
			case b == 0x9b: // C1 CSI
				c.state, c.digits, c.utf8Rem, c.first, c.private = clampParams, 0, 0, true, false
			default:
				c.utf8Rem = 0
			}
		case clampEsc:
			switch b {
			case '[':
				c.state, c.digits, c.first, c.private = clampParams, 0, true, false
			case 0x1b:
			default:
				c.state = clampText
			}
		case clampParams:
			if c.first && b >= 0x3c && b <= 0x3f {
				c.private = true
			}
			c.first = false
			switch {
			case b >= '0' && b <= '9':
				c.digits++
				drop = !c.private && c.digits > maxParamDigits
			case b >= 0x20 && b <= 0x3f:
				c.digits = 0
			case b == 0x1b:
				c.state = clampEsc
			default:
				c.state = clampText
			}
		}
		if drop && out == nil {
			out = append(make([]byte, 0, len(p)), p[:i]...)
		}
		if out != nil && !drop {
			out = append(out, b)
		}
	}
	if out == nil {
		return p
	}
	return out
}
