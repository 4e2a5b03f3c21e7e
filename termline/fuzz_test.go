package termline

import (
	"testing"
	"unicode/utf8"
)

// FuzzTermline drives a Termline with an arbitrary interleaving of target
// output and user input: it must never panic or block, and Line must always
// return valid UTF-8. The first byte of data picks the terminal size, the
// rest is cut into chunks whose first byte says where the chunk goes.
func FuzzTermline(f *testing.F) {
	f.Add([]byte("\x50\x00$ \x01ls\x00ls\x02"))
	f.Add([]byte("\x0a\x00$ \x01abcdefghijklmnop\x00abcdefghijklmnop\x02\x00\r\n> \x01x\x02"))
	f.Add([]byte("\x20\x00\x1b[?1049h\x01:q\x02\x00\x1b[?1049l$ \x02"))
	f.Add([]byte("\x30\x00\x1b[?2004h$ \x01\x1b[200~a\x02\x01\x1b[201~\x03\x04"))
	f.Add([]byte("\x08\x00\x1b[6n\x1b[c\x1b]11;?\x07\x1b[2J\x1b[H\x01\x12\x00(reverse-i-search)`x': y\x02"))
	f.Add([]byte("\x05\x00\xff\xfe\xe6\xbc\xa2\x01\xe5\xad\x97\x00\x1b[?2048h\x05\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		cols := int(data[0]%120) + 1
		rows := int(data[0]/120) + 2
		tl := New(cols, rows)
		defer func() { _ = tl.Close() }()
		data = data[1:]
		for len(data) > 0 {
			op := data[0]
			data = data[1:]
			n := 0
			for n < len(data) && data[n] > 0x05 || n < len(data) && data[n] == 0x03 || n < len(data) && data[n] == 0x04 {
				n++
			}
			chunk := data[:n]
			data = data[n:]
			switch op % 6 {
			case 0:
				tl.Output(chunk)
			case 1:
				for p := chunk; len(p) > 0; {
					ev := tl.Input(p)
					if ev.N < 0 || ev.N > len(p) {
						t.Fatalf("Input N = %d of %d", ev.N, len(p))
					}
					if !ev.Enter {
						break
					}
					check(t, tl)
					tl.Accept()
					p = p[ev.N+1:]
				}
			case 2:
				check(t, tl)
				tl.Accept()
			case 3:
				_ = tl.Clear()
			case 4:
				tl.Resize(int(len(chunk)%100)+1, int(len(chunk)%30)+1)
			case 5:
				_ = tl.Prompt()
				_ = tl.AltScreen()
				_ = tl.Continued()
			}
		}
		check(t, tl)
	})
}

func check(t *testing.T, tl *Termline) {
	t.Helper()
	line, ok := tl.Line()
	if !utf8.ValidString(line) {
		t.Fatalf("Line() = %q is not valid UTF-8", line)
	}
	if !ok && line != "" {
		t.Fatalf("Line() = %q with ok=false", line)
	}
	if p := tl.Prompt(); !utf8.ValidString(p) {
		t.Fatalf("Prompt() = %q is not valid UTF-8", p)
	}
}
