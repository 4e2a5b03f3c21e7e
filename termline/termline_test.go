package termline

import (
	"bytes"
	"strings"
	"testing"
)

// step is one thing that happens in a recorded session: output from the
// target, input from the user, or an Enter at which Line is checked.
type step struct {
	out   string // bytes from the target
	in    string // bytes typed, no Enter
	enter bool   // press Enter: check Line, then Accept
	want  string
	ok    bool
	cont  bool // want Continued()
}

func out(s string) step { return step{out: s} }
func in(s string) step  { return step{in: s} }
func enter(want string) step {
	return step{enter: true, want: want, ok: true}
}

func TestRecorded(t *testing.T) {
	tests := []struct {
		name       string
		cols, rows int
		steps      []step
	}{
		{"plain", 80, 24, []step{
			out("$ "), in("ls -l"), out("ls -l"), enter("ls -l"),
		}},
		{"nothing typed", 80, 24, []step{
			out("$ "), enter(""),
		}},
		{"backspace echo", 80, 24, []step{
			out("$ "), in("lsx\x7f"), out("lsx\b \b"), enter("ls"),
		}},
		{"soft wrap keeps a space at the margin", 10, 5, []step{
			out("$ "), in("abcdefg hij"), out("abcdefg hij"), enter("abcdefg hij"),
		}},
		{"wrap at the bottom scrolls the prompt up", 10, 3, []step{
			out("1\r\n2\r\n$ "), in("abcdefghijklmnopqrst"), out("abcdefghijklmnopqrst"),
			enter("abcdefghijklmnopqrst"),
		}},
		{"cursor moved to the first row of a wrapped line", 10, 5, []step{
			out("$ "), in("abcdefghijkl\x01"), out("abcdefghijkl\r\x1b[A\x1b[2C"), enter("abcdefghijkl"),
		}},
		{"completion listing redraws the prompt below", 80, 24, []step{
			out("$ "), in("ls c\t\t"), out("ls c\r\nc1  c2\r\n$ ls c"), enter("ls c"),
		}},
		{"ctrl-l clears and redraws", 80, 24, []step{
			out("x\r\ny\r\n$ "), in("ls\x0c"), out("ls\x1b[H\x1b[2J$ ls"), enter("ls"),
		}},
		{"two-row prompt", 80, 24, []step{
			out("user@host ~/src\r\n> "), in("make"), out("make"), enter("make"),
		}},
		{"prompt with colours", 80, 24, []step{
			out("\x1b[01;32muser\x1b[00m:\x1b[01;34m~\x1b[00m$ "), in("id"), out("id"), enter("id"),
		}},
		{"prompt ending at the margin", 8, 4, []step{
			out("12345678"), in("ls"), out("ls"), enter("ls"),
		}},
		{"wide characters", 80, 24, []step{
			out("$ "), in("echo 漢字"), out("echo 漢字"), enter("echo 漢字"),
		}},
		{"history search", 80, 24, []step{
			out("$ "), in("\x12rm"), out("\r(reverse-i-search)`': \x08\x08\x08rm': rm -rf /tmp/x\x1b[K"), enter("rm -rf /tmp/x"),
		}},
		{"alternate screen", 80, 24, []step{
			out("$ "), in("vim"), out("vim"), enter("vim"),
			out("\x1b[?1049h\x1b[H~\r\n~"), in(":q!"), out(":q!"),
			{enter: true, want: "", ok: false},
			out("\x1b[?1049l\r\n$ "), in("echo hi"), out("echo hi"), enter("echo hi"),
		}},
		{"continuation prompt joins", 80, 24, []step{
			out("$ "), in("echo 'a"), out("echo 'a"), enter("echo 'a"),
			out("\r\n> "), in("b'"), out("b'"), {enter: true, want: "echo 'a\nb'", ok: true, cont: true},
			out("\r\na\r\nb\r\n$ "), in("pwd"), out("pwd"), enter("pwd"),
		}},
		{"ctrl-c drops a pending continuation", 80, 24, []step{
			out("$ "), in("echo 'a"), out("echo 'a"), enter("echo 'a"),
			out("\r\n> "), in("b\x03"), out("b^C\r\n$ "), in("x"), out("x"), enter("x"),
		}},
		{"queries from the target do not block", 80, 24, []step{
			out("\x1b[6n\x1b[c\x1b[>c\x1b]11;?\x07$ "), in("ls"), out("ls"), enter("ls"),
		}},
		{"bracketed paste keeps the newline in the line", 80, 24, []step{
			out("\x1b[?2004h$ "), in("\x1b[200~echo a"), out("echo a"),
			{enter: true, want: "echo a", ok: true},
			in("echo b\x1b[201~"), out("\r\necho b"), enter("echo a\necho b"),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := New(tc.cols, tc.rows)
			t.Cleanup(func() { _ = tl.Close() })
			for i, s := range tc.steps {
				switch {
				case s.out != "":
					tl.Output([]byte(s.out))
				case s.in != "":
					if ev := tl.Input([]byte(s.in)); ev.Enter || ev.N != len(s.in) {
						t.Fatalf("step %d: Input(%q) = %+v", i, s.in, ev)
					}
				case s.enter:
					if ev := tl.Input([]byte("\r")); !ev.Enter || ev.N != 0 {
						t.Fatalf("step %d: Input(\\r) = %+v", i, ev)
					}
					got, ok := tl.Line()
					if got != s.want || ok != s.ok {
						t.Fatalf("step %d: Line() = %q, %v; want %q, %v; screen:\n%s", i, got, ok, s.want, s.ok, tl.screen())
					}
					if c := tl.Continued(); c != s.cont {
						t.Fatalf("step %d: Continued() = %v, want %v", i, c, s.cont)
					}
					tl.Accept()
				}
			}
		})
	}
}

func TestInputSplitsAtEnter(t *testing.T) {
	tests := []struct {
		in    string
		n     int
		enter bool
	}{
		{"ls", 2, false},
		{"ls\rpwd\r", 2, true},
		{"\r", 0, true},
		{"a\nb", 1, true},
		{"", 0, false},
		{"\x1b[A\x1b[B", 6, false},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.in, "\x1b", "ESC"), func(t *testing.T) {
			tl := New(80, 24)
			t.Cleanup(func() { _ = tl.Close() })
			ev := tl.Input([]byte(tc.in))
			if ev.N != tc.n || ev.Enter != tc.enter {
				t.Fatalf("Input(%q) = %+v, want N=%d Enter=%v", tc.in, ev, tc.n, tc.enter)
			}
		})
	}
}

func TestPasteLinesAreSeparateDecisions(t *testing.T) {
	tl := New(80, 24)
	t.Cleanup(func() { _ = tl.Close() })
	tl.Output([]byte("$ "))
	p := []byte("echo one\rrm -rf /\recho three")
	var lines []string
	for len(p) > 0 {
		ev := tl.Input(p)
		tl.Output(p[:ev.N]) // the shell echoes what was forwarded
		if !ev.Enter {
			break
		}
		line, ok := tl.Line()
		if !ok {
			t.Fatalf("Line() not ok at %q", line)
		}
		lines = append(lines, line)
		if strings.HasPrefix(line, "rm") {
			if got := tl.Clear(); !bytes.Equal(got, []byte{0x03}) {
				t.Fatalf("Clear() = %q", got)
			}
			tl.Output([]byte("^C\r\n$ "))
			break
		}
		tl.Accept()
		tl.Output([]byte("\r\none\r\n$ "))
		p = p[ev.N+1:]
	}
	want := []string{"echo one", "rm -rf /"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("decisions = %q, want %q", lines, want)
	}
	if tl.Continued() {
		t.Fatal("Continued() after Clear")
	}
}

func TestClear(t *testing.T) {
	tests := []struct {
		name  string
		setup string // target output before the input
		in    string
		want  string
	}{
		{"plain", "$ ", "rm -rf /", "\x03"},
		{"inside a bracketed paste", "\x1b[?2004h$ ", "\x1b[200~rm -rf /", "\x1b[201~\x03"},
		{"after a bracketed paste", "\x1b[?2004h$ ", "\x1b[200~rm -rf /\x1b[201~", "\x03"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := New(80, 24)
			t.Cleanup(func() { _ = tl.Close() })
			tl.Output([]byte(tc.setup))
			tl.Input([]byte(tc.in))
			if got := string(tl.Clear()); got != tc.want {
				t.Fatalf("Clear() = %q, want %q", got, tc.want)
			}
			if got := string(tl.Clear()); got != "\x03" {
				t.Fatalf("second Clear() = %q, want Ctrl-C alone", got)
			}
		})
	}
}

func TestResizeAndClose(t *testing.T) {
	tl := New(80, 24)
	tl.Output([]byte("$ "))
	tl.Input([]byte("ls"))
	tl.Output([]byte("ls"))
	tl.Resize(40, 10)
	if got, ok := tl.Line(); got != "ls" || !ok {
		t.Fatalf("Line() after resize = %q, %v", got, ok)
	}
	if err := tl.Close(); err != nil {
		t.Fatal(err)
	}
	tl.Output([]byte("\x1b[6n more")) // must neither block nor panic
	if got, ok := tl.Line(); got != "ls more" || !ok {
		t.Fatalf("Line() after close = %q, %v", got, ok)
	}
}
