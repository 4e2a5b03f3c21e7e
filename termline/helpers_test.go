package termline

import "strings"

// screen returns the emulator's screen as text, for test conditions.
func (t *Termline) screen() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.emu.String()
}

// cursorRow returns the text of the row the cursor is on.
func (t *Termline) cursorRow() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	y := t.emu.CursorPosition().Y
	return strings.TrimRight(t.rowText(y, 0, t.emu.Width()), " ")
}

// rows returns the full-width rows of the screen joined without newlines, so
// soft-wrapped text reads as typed.
func (t *Termline) rows() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for y := 0; y < t.emu.Height(); y++ {
		b.WriteString(t.rowText(y, 0, t.emu.Width()))
	}
	return b.String()
}
