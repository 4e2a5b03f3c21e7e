package termline

import (
	"io"
	"strings"
	"sync"

	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/vt"
)

// Control bytes the package recognises in the user's input.
const (
	keyCR    = '\r'
	keyLF    = '\n'
	keyCtrlC = 0x03
	keyEsc   = 0x1b
)

// Bracketed paste markers a terminal wraps pasted text in when the target
// enabled mode 2004.
const (
	pasteStart = "\x1b[200~"
	pasteEnd   = "\x1b[201~"
)

// maxPending bounds the earlier continuation lines kept for joining, so a
// program whose primary prompt looks like a continuation prompt cannot make
// Line grow without limit. The oldest lines are dropped first.
const maxPending = 64 << 10

// DefaultContinuationPrompts are the prompts that mark a line as the
// continuation of the previous one: bash's and zsh's default PS2 "> ".
var DefaultContinuationPrompts = []string{"> "}

// Event reports what Input found in the bytes typed by the user.
type Event struct {
	// N is the number of leading bytes of p that Input consumed. The caller
	// forwards p[:N] to the target now.
	N int
	// Enter reports that p[N] is an Enter byte ('\r' or '\n') that Input did
	// NOT consume. The caller waits until the echo of the bytes forwarded
	// before it has arrived, calls Line and decides; then it either calls
	// Accept and forwards p[N], or forwards Clear() instead and drops what
	// the user typed after it. Either way it continues with p[N+1:] (after
	// the output following the Enter has settled, see Accept).
	Enter bool
}

// Option configures a Termline.
type Option func(*Termline)

// WithContinuationPrompts replaces DefaultContinuationPrompts: a line typed
// after one of these prompts, directly after an accepted line, is reported by
// Line joined to the lines before it. An empty list turns joining off.
func WithContinuationPrompts(prompts ...string) Option {
	return func(t *Termline) {
		t.contPrompts = append([]string(nil), prompts...)
	}
}

// anchor is where the user started typing the current line: the first cell
// after the prompt, and the prompt text on that row before it.
type anchor struct {
	x, y   int
	prompt string
	mark   string // Params of the invisible link planted on the cell before (x, y); "" when there is none
}

// Termline tracks one interactive terminal session. It is safe for use by one
// goroutine feeding Output and another feeding Input. Close releases it.
type Termline struct {
	mu   sync.Mutex
	emu  *vt.Emulator
	done chan struct{} // closed when the drain goroutine has returned

	contPrompts []string

	alt        bool // alternate screen active
	bracketed  bool // target enabled bracketed paste (mode 2004)
	inPaste    bool // the user's terminal is inside a bracketed paste
	escBuf     []byte
	clamp      clampState
	anc        *anchor
	multiline  bool     // a newline went into the current line without ending it (bracketed paste)
	pending    []string // accepted lines the current one may continue
	pendingLen int
	nextMark   uint64
}

// New returns a Termline for a terminal of cols×rows cells. Sizes below 1
// are raised to 1.
func New(cols, rows int, opts ...Option) *Termline {
	cols, rows = max(cols, 1), max(rows, 1)
	t := &Termline{
		emu:         vt.NewEmulator(cols, rows),
		done:        make(chan struct{}),
		contPrompts: DefaultContinuationPrompts,
	}
	for _, o := range opts {
		o(t)
	}
	// Lines scrolled off the top are never read back; keep the emulator's
	// scrollback as small as it allows (it cannot be switched off).
	t.emu.SetScrollbackSize(1)
	t.emu.SetCallbacks(vt.Callbacks{
		AltScreen: func(on bool) { t.alt = on },
		EnableMode: func(m ansi.Mode) {
			if m == ansi.ModeBracketedPaste {
				t.bracketed = true
			}
		},
		DisableMode: func(m ansi.Mode) {
			if m == ansi.ModeBracketedPaste {
				t.bracketed = false
			}
		},
	})
	// The emulator answers queries (device attributes, cursor position,
	// colours) on a synchronous pipe; the real user's terminal answers
	// those, so the emulator's answers are read and discarded here, or
	// Output would block on the first query.
	go func() {
		defer close(t.done)
		_, _ = io.Copy(io.Discard, t.emu)
	}()
	return t
}

// Close stops the goroutine that discards the emulator's replies and waits
// for it. Output after Close is ignored; Line keeps answering from the last
// screen.
func (t *Termline) Close() error {
	t.mu.Lock()
	if c, ok := t.emu.InputPipe().(io.Closer); ok {
		_ = c.Close()
	}
	t.mu.Unlock()
	<-t.done
	return nil
}

// Output feeds bytes the target sent to the user's terminal.
func (t *Termline) Output(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = t.emu.Write(t.clamp.clamp(p))
}

// Resize tells the emulator the user's terminal changed size.
func (t *Termline) Resize(cols, rows int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.emu.Resize(max(cols, 1), max(rows, 1))
}

// AltScreen reports whether the alternate screen is active: a full-screen
// program (vim, less, top) owns the terminal and Line reports ok=false.
func (t *Termline) AltScreen() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.alt
}

// Input feeds bytes typed by the user, up to the first Enter. See Event for
// the protocol around Enter. The line's starting point (the end of the
// prompt) is taken when the first byte of a line arrives, so the caller must
// feed input only once the output that followed the previous Enter has
// settled.
func (t *Termline) Input(p []byte) Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, b := range p {
		if b == keyCR || b == keyLF {
			return Event{N: i, Enter: true}
		}
		if t.anc == nil && !t.alt {
			t.anc = t.newAnchor()
		}
		t.scanPaste(b)
		if b == keyCtrlC && !t.inPaste {
			// Ctrl-C abandons the line (and a multi-line command).
			t.reset()
		}
	}
	return Event{N: len(p)}
}

// scanPaste follows the bracketed paste markers in the input stream, across
// calls.
func (t *Termline) scanPaste(b byte) {
	if b == keyEsc {
		t.escBuf = append(t.escBuf[:0], b)
		return
	}
	if len(t.escBuf) == 0 {
		return
	}
	t.escBuf = append(t.escBuf, b)
	seq := string(t.escBuf)
	switch {
	case seq == pasteStart:
		t.inPaste = true
	case seq == pasteEnd:
		t.inPaste = false
	case strings.HasPrefix(pasteStart, seq) || strings.HasPrefix(pasteEnd, seq):
		return
	}
	t.escBuf = t.escBuf[:0]
}

// Accept records that the Enter reported by Input was allowed and forwarded.
// The line ends, except inside a bracketed paste the target asked for, where
// the newline becomes part of the line. The caller should let the target's
// output settle before it feeds further input.
func (t *Termline) Accept() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inPaste && t.bracketed {
		t.multiline = true
		return
	}
	if t.alt {
		t.reset()
		return
	}
	text, ok := t.current()
	cont := t.continued()
	t.anc, t.multiline = nil, false
	if !ok {
		t.pending, t.pendingLen = nil, 0
		return
	}
	if !cont {
		t.pending, t.pendingLen = t.pending[:0], 0
	}
	t.pending = append(t.pending, text)
	t.pendingLen += len(text)
	for t.pendingLen > maxPending && len(t.pending) > 1 {
		t.pendingLen -= len(t.pending[0])
		t.pending = t.pending[1:]
	}
}

// Clear returns the bytes to send to the target instead of a blocked Enter
// and forgets the line. It is Ctrl-C (preceded by the end-of-paste marker
// when the user is inside a bracketed paste, so the target leaves paste
// mode): unlike Ctrl-U it discards the whole buffer wherever the cursor is,
// earlier continuation lines included, and every shell prints a fresh prompt,
// which tells the user something happened. Its cost is that a program reading
// a cooked-mode line (cat, read) gets SIGINT rather than an erased line.
func (t *Termline) Clear() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []byte{keyCtrlC}
	if t.inPaste {
		out = append([]byte(pasteEnd), out...)
	}
	t.reset()
	t.inPaste = false
	return out
}

// reset forgets the current line and any earlier continuation lines.
func (t *Termline) reset() {
	t.anc, t.multiline = nil, false
	t.pending, t.pendingLen = nil, 0
}

// Line returns the command line as displayed: the text after the prompt,
// joined across soft-wrapped rows, trailing spaces trimmed. When the line
// was typed after a continuation prompt directly following an accepted line,
// the earlier lines come first, each ended by "\n" (see Continued). ok is
// false when the line cannot be determined reliably: the alternate screen is
// active (see AltScreen), or the prompt the line started after is no longer
// on the screen.
func (t *Termline) Line() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.anc == nil && !t.alt {
		t.anc = t.newAnchor()
	}
	return t.line()
}

// Continued reports whether the current line follows a continuation prompt,
// so Line includes earlier lines.
func (t *Termline) Continued() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.continued()
}

// Prompt returns the prompt text on the row where the current line starts,
// for logs; "" when there is no current line.
func (t *Termline) Prompt() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.anc == nil || t.alt {
		return ""
	}
	if start, ok := t.locate(); ok {
		return strings.ToValidUTF8(start.prompt, "\uFFFD")
	}
	return ""
}

func (t *Termline) continued() bool {
	if len(t.pending) == 0 || t.anc == nil {
		return false
	}
	for _, p := range t.contPrompts {
		if t.anc.prompt == p {
			return true
		}
	}
	return false
}

// current returns the text of the current line alone.
func (t *Termline) current() (string, bool) {
	if t.alt || t.anc == nil {
		return "", false
	}
	start, ok := t.locate()
	if !ok {
		return "", false
	}
	return t.extract(start), true
}

func (t *Termline) line() (string, bool) {
	text, ok := t.current()
	if !ok {
		return "", false
	}
	if t.continued() {
		text = strings.Join(t.pending, "\n") + "\n" + text
	}
	return strings.ToValidUTF8(text, "\uFFFD"), true
}
