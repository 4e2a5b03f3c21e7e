package termline

import (
	"regexp"
	"strconv"
	"strings"

	uv "github.com/charmbracelet/ultraviolet"
)

// markURL is the hyperlink target of the invisible mark planted on the last
// prompt cell. Hyperlinks travel with their cell when the screen scrolls and
// vanish when the cell is rewritten, which is exactly the life of "the
// prompt this line was typed after". A NUL cannot arrive in an OSC 8
// sequence from the target, so output cannot forge a mark.
const markURL = "\x00termline"

// isearchPrompt matches readline's incremental search prompt, which replaces
// the normal prompt while the user searches the history with Ctrl-R/Ctrl-S.
var isearchPrompt = regexp.MustCompile("\\((?:failed )?(?:reverse-)?i-search\\)`[^']*': ")

// start is where the command text of the current line begins on screen.
type start struct {
	x, y   int
	prompt string // text of row y before x
}

// newAnchor records the cursor position as the start of a new line and
// plants the mark on the cell before it.
func (t *Termline) newAnchor() *anchor {
	pos := t.emu.CursorPosition()
	w := t.emu.Width()
	x, y := pos.X, pos.Y
	// A prompt that ends exactly at the right margin leaves the cursor on
	// its last cell (pending wrap): typing starts on the next row.
	if x == w-1 && !blankCell(t.emu.CellAt(x, y)) {
		x = w
	}
	a := &anchor{x: x, y: y, prompt: t.rowText(y, 0, x)}
	mx, my := x-1, y
	if mx < 0 {
		mx, my = w-1, y-1
	}
	for mx > 0 && isContinuation(t.emu.CellAt(mx, my)) {
		mx--
	}
	if c := t.emu.CellAt(mx, my); c != nil {
		t.nextMark++
		a.mark = strconv.FormatUint(t.nextMark, 10)
		c.Link = uv.Link{URL: markURL, Params: a.mark}
	}
	if a.x >= w {
		a.x, a.y, a.prompt = 0, y+1, ""
	}
	return a
}

// locate finds where the current line starts on the screen as it is now.
func (t *Termline) locate() (start, bool) {
	a := t.anc
	cur := t.emu.CursorPosition()
	cx, cy := cur.X, cur.Y
	if a.mark == "" {
		// Nothing before the anchor to mark (top-left corner): the
		// position is kept as it was taken.
		if a.y < cy || (a.y == cy && a.x <= cx) {
			return t.redrawn(start{x: a.x, y: a.y, prompt: a.prompt}, cy), true
		}
	} else if mx, my, ok := t.findMark(a.mark); ok {
		s := start{x: mx + max(t.emu.CellAt(mx, my).Width, 1), y: my, prompt: a.prompt}
		if s.x >= t.emu.Width() {
			s.x, s.y = 0, my+1
		}
		if s.y < cy || (s.y == cy && s.x <= cx) {
			return t.redrawn(s, cy), true
		}
	}
	// The prompt was rewritten (Ctrl-L, a resize, a redisplay, readline's
	// history search): look for it in the cursor's block, the rows that
	// wrap into the cursor row.
	w := t.emu.Width()
	for r := cy; r >= 0; r-- {
		if r < cy && !t.fullRow(r) {
			break
		}
		if a.prompt != "" && t.rowText(r, 0, a.x) == a.prompt {
			return start{x: a.x, y: r, prompt: a.prompt}, true
		}
		row := t.rowText(r, 0, w)
		if loc := isearchPrompt.FindAllStringIndex(row, -1); loc != nil {
			end := loc[len(loc)-1][1]
			return start{x: t.columnOf(r, end), y: r, prompt: row[:end]}, true
		}
	}
	return start{}, false
}

// redrawn moves s down to the last fresh copy of the prompt between s and
// the cursor row: readline reprints the prompt and the line below a
// completion listing or a job notice, leaving the old copy above. A fresh
// copy is a row that starts with the prompt right after a row that did not
// wrap into it.
func (t *Termline) redrawn(s start, cy int) start {
	for r := cy; r > s.y; r-- {
		if t.fullRow(r - 1) {
			continue
		}
		if s.prompt == "" {
			return start{x: 0, y: r}
		}
		if t.rowText(r, 0, s.x) == s.prompt {
			return start{x: s.x, y: r, prompt: s.prompt}
		}
	}
	return s
}

// extract reads the line from s to its end: every row down to the cursor,
// then the rows below it until a blank one. Rows are joined as they appear
// when soft-wrapped; when the line holds newlines (a bracketed paste), a
// row that does not reach the right margin ends with "\n".
func (t *Termline) extract(s start) string {
	h, w := t.emu.Height(), t.emu.Width()
	if s.y >= h {
		return ""
	}
	cy := t.emu.CursorPosition().Y
	end := max(cy, s.y)
	for end+1 < h && !t.blankRow(end+1) {
		end++
	}
	var b strings.Builder
	for r := s.y; r <= end; r++ {
		x0 := 0
		if r == s.y {
			x0 = s.x
		}
		seg := t.rowText(r, x0, w)
		if t.multiline && r < end && !t.fullRow(r) {
			seg = strings.TrimRight(seg, " ") + "\n"
		}
		b.WriteString(seg)
	}
	return strings.TrimRight(b.String(), " ")
}

// rowText returns the text of row y from column x0 up to x1.
func (t *Termline) rowText(y, x0, x1 int) string {
	var b strings.Builder
	for x := max(x0, 0); x < x1; x++ {
		c := t.emu.CellAt(x, y)
		switch {
		case c == nil:
			return b.String()
		case isContinuation(c):
		case c.Content == "":
			b.WriteByte(' ')
		default:
			b.WriteString(c.Content)
		}
	}
	return b.String()
}

// columnOf returns the column where byte offset off of row y's text lies.
func (t *Termline) columnOf(y, off int) int {
	n := 0
	for x := 0; x < t.emu.Width(); x++ {
		c := t.emu.CellAt(x, y)
		if c == nil {
			return x
		}
		if isContinuation(c) {
			continue
		}
		if n >= off {
			return x
		}
		n += max(len(c.Content), 1)
	}
	return t.emu.Width()
}

// fullRow reports whether row y reaches the right margin, as a soft-wrapped
// row does.
func (t *Termline) fullRow(y int) bool {
	c := t.emu.CellAt(t.emu.Width()-1, y)
	return c != nil && (isContinuation(c) || !blankCell(c))
}

func (t *Termline) blankRow(y int) bool {
	for x := 0; x < t.emu.Width(); x++ {
		if !blankCell(t.emu.CellAt(x, y)) {
			return false
		}
	}
	return true
}

func (t *Termline) findMark(mark string) (x, y int, ok bool) {
	for y := 0; y < t.emu.Height(); y++ {
		for x := 0; x < t.emu.Width(); x++ {
			if c := t.emu.CellAt(x, y); c != nil && c.Link.URL == markURL && c.Link.Params == mark {
				return x, y, true
			}
		}
	}
	return 0, 0, false
}

// blankCell reports whether c shows nothing.
func blankCell(c *uv.Cell) bool {
	return c == nil || c.Content == "" || c.Content == " "
}

// isContinuation reports whether c is the right half of a wide character.
func isContinuation(c *uv.Cell) bool {
	return c != nil && c.Width == 0 && c.Content == ""
}
