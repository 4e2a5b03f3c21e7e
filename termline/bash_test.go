package termline

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// waitLimit bounds every wait for the shell; it is a deadline for a
// condition, never a pause.
const waitLimit = 10 * time.Second

// shell is a real interactive bash in a real PTY whose output is fed to a
// Termline, with keystrokes typed into both the way the bastion does.
type shell struct {
	t    *testing.T
	tl   *Termline
	ptmx *os.File
	dir  string
	// promptMark is a substring of the raw prompt bytes; the number of
	// times it has appeared in the output tells when a new prompt arrived.
	promptMark string

	mu     sync.Mutex
	raw    bytes.Buffer
	notify chan struct{}
}

func startShell(t *testing.T, ps1, promptMark string) *shell {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "--norc", "--noprofile", "-i")
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"TERM=xterm-256color",
		"LANG=C.UTF-8",
		"INPUTRC=/dev/null",
		"HISTFILE=" + filepath.Join(dir, ".bash_history"),
		"PS1=" + ps1,
		`PS2=\[\e[0m\]> `,
	}
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 80, Rows: 24})
	if err != nil {
		t.Fatalf("start bash: %v", err)
	}
	sh := &shell{t: t, tl: New(80, 24), ptmx: ptmx, dir: dir, promptMark: promptMark, notify: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				sh.tl.Output(buf[:n])
				sh.mu.Lock()
				sh.raw.Write(buf[:n])
				sh.mu.Unlock()
				select {
				case sh.notify <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = ptmx.Close()
		wg.Wait()
		_ = sh.tl.Close()
	})
	sh.waitPrompts(1)
	return sh
}

// waitFor waits until cond holds for the emulator's screen.
func (sh *shell) waitFor(what string, cond func() bool) {
	sh.t.Helper()
	if !sh.waitUntil(cond) {
		sh.t.Fatalf("timed out waiting for %s; screen:\n%s", what, sh.tl.screen())
	}
}

// waitUntil is waitFor that reports a timeout instead of failing.
func (sh *shell) waitUntil(cond func() bool) bool {
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-sh.notify:
		case <-deadline.C:
			return false
		}
	}
	return true
}

func (sh *shell) prompts() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return strings.Count(sh.raw.String(), sh.promptMark) + strings.Count(sh.raw.String(), ps2Mark)
}

func (sh *shell) waitPrompts(n int) {
	sh.t.Helper()
	sh.waitFor("prompt", func() bool { return sh.prompts() >= n })
}

// waitScreen waits until the screen contains s.
func (sh *shell) waitScreen(s string) {
	sh.t.Helper()
	sh.waitFor(strconvQuote(s), func() bool { return strings.Contains(sh.tl.screen(), s) })
}

// typ types keys that contain no Enter, as the bastion forwards them.
func (sh *shell) typ(keys string) {
	sh.t.Helper()
	ev := sh.tl.Input([]byte(keys))
	if ev.Enter || ev.N != len(keys) {
		sh.t.Fatalf("Input(%q) = %+v, want all consumed and no Enter", keys, ev)
	}
	if _, err := sh.ptmx.WriteString(keys); err != nil {
		sh.t.Fatalf("type: %v", err)
	}
}

// enter presses Enter, asserts the line the bastion would see, forwards the
// Enter and waits for the next prompt.
func (sh *shell) enter(want string, wantOK bool) {
	sh.t.Helper()
	got, ok := sh.pressEnter()
	if got != want || ok != wantOK {
		sh.t.Fatalf("Line() = %q, %v; want %q, %v; screen:\n%s", got, ok, want, wantOK, sh.tl.screen())
	}
}

// pressEnter decides at Enter and forwards it, returning what Line said.
func (sh *shell) pressEnter() (string, bool) {
	sh.t.Helper()
	ev := sh.tl.Input([]byte{'\r'})
	if !ev.Enter || ev.N != 0 {
		sh.t.Fatalf("Input(\\r) = %+v, want Enter at 0", ev)
	}
	got, ok := sh.tl.Line()
	before := sh.prompts()
	alt := sh.tl.AltScreen()
	sh.tl.Accept()
	if _, err := sh.ptmx.WriteString("\r"); err != nil {
		sh.t.Fatalf("type: %v", err)
	}
	if !alt {
		sh.waitFor("prompt or full-screen program", func() bool { return sh.prompts() > before || sh.tl.AltScreen() })
	}
	return got, ok
}

func strconvQuote(s string) string { return `"` + s + `"` }

const plainPS1 = "test$ "

// ps2Mark is what the continuation prompt PS2 sends.
const ps2Mark = "\x1b[0m> "

// colorPS1 is a two-colour user@host:cwd prompt with readline's invisible
// markers, as distributions ship it.
const colorPS1 = `\[\e[01;32m\]\u@\h\[\e[00m\]:\[\e[01;34m\]\w\[\e[00m\]\$\[\e[0m\] `

func TestBash(t *testing.T) {
	prompts := []struct {
		name, ps1, mark string
	}{
		{"plain", plainPS1, "test$ "},
		{"color", colorPS1, "\x1b[0m "},
		{"multiline", `\[\e[33m\]first line of the prompt\n\[\e[36m\]>>\[\e[0m\] `, "\x1b[0m "},
	}
	for _, p := range prompts {
		mark := p.mark
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			runBashCases(t, p.ps1, mark)
		})
	}
}

func runBashCases(t *testing.T, ps1, mark string) {
	cases := []struct {
		name string
		run  func(sh *shell)
	}{
		{"plain typing", func(sh *shell) {
			sh.typ("echo hello world")
			sh.waitScreen("echo hello world")
			sh.enter("echo hello world", true)
		}},
		{"backspace", func(sh *shell) {
			sh.typ("echo helloXYZ")
			sh.waitScreen("helloXYZ")
			sh.typ("\x7f\x7f\x7f")
			sh.waitFor("erase", func() bool { return !strings.Contains(sh.tl.screen(), "helloX") })
			sh.enter("echo hello", true)
		}},
		{"ctrl-u then retype", func(sh *shell) {
			sh.typ("rm -rf /tmp/nothing-here")
			sh.waitScreen("nothing-here")
			sh.typ("\x15")
			sh.waitFor("kill", func() bool { return !strings.Contains(sh.tl.screen(), "nothing-here") })
			sh.typ("echo safe")
			sh.waitScreen("echo safe")
			sh.enter("echo safe", true)
		}},
		{"ctrl-w", func(sh *shell) {
			sh.typ("echo one two")
			sh.waitScreen("one two")
			sh.typ("\x17three")
			sh.waitScreen("one three")
			sh.enter("echo one three", true)
		}},
		{"left arrow insert", func(sh *shell) {
			sh.typ("echo wrld")
			sh.waitScreen("echo wrld")
			sh.typ("\x1b[D\x1b[D\x1b[Do")
			sh.waitScreen("echo world")
			sh.enter("echo world", true)
		}},
		{"home and end", func(sh *shell) {
			sh.typ("cho x")
			sh.waitScreen("cho x")
			sh.typ("\x1b[He")
			sh.waitScreen("echo x")
			sh.typ("\x1b[Fy")
			sh.waitScreen("echo xy")
			sh.enter("echo xy", true)
		}},
		{"history recall", func(sh *shell) {
			sh.typ("echo first")
			sh.waitScreen("echo first")
			sh.enter("echo first", true)
			sh.typ("echo second")
			sh.waitScreen("echo second")
			sh.enter("echo second", true)
			sh.typ("\x1b[A\x1b[A")
			sh.waitFor("recall", func() bool {
				return strings.HasSuffix(strings.TrimRight(sh.tl.cursorRow(), " "), "echo first")
			})
			sh.enter("echo first", true)
		}},
		{"history search", func(sh *shell) {
			sh.typ("echo needle-42")
			sh.waitScreen("echo needle-42")
			sh.enter("echo needle-42", true)
			sh.typ("echo other")
			sh.waitScreen("echo other")
			sh.enter("echo other", true)
			sh.typ("\x12needle")
			sh.waitScreen("`needle': echo needle-42")
			sh.enter("echo needle-42", true)
		}},
		{"tab completion", func(sh *shell) {
			writeFile(t, filepath.Join(sh.dir, "uniquely-named-file.txt"))
			sh.typ("cat uniq")
			sh.waitScreen("cat uniq")
			sh.typ("\t")
			sh.waitScreen("cat uniquely-named-file.txt")
			sh.enter("cat uniquely-named-file.txt", true)
		}},
		{"tab listing redraws the prompt", func(sh *shell) {
			writeFile(t, filepath.Join(sh.dir, "choice-one"))
			writeFile(t, filepath.Join(sh.dir, "choice-two"))
			sh.typ("ls cho")
			sh.waitScreen("ls cho")
			sh.typ("\t")
			sh.waitScreen("ls choice-")
			// The second Tab only rings the bell, the third lists.
			sh.typ("\t\t")
			sh.waitScreen("choice-two")
			sh.typ("t")
			sh.waitFor("completion", func() bool { return strings.HasSuffix(strings.TrimRight(sh.tl.cursorRow(), " "), "ls choice-t") })
			sh.typ("\t")
			sh.waitFor("completion", func() bool { return strings.Contains(sh.tl.cursorRow(), "ls choice-two") })
			sh.enter("ls choice-two", true)
		}},
		{"long line wraps at the bottom", func(sh *shell) {
			sh.typ("seq 40")
			sh.waitScreen("seq 40")
			sh.enter("seq 40", true)
			cmd := longCommand(300)
			for i := 0; i < len(cmd); i += 37 {
				sh.typ(cmd[i:min(i+37, len(cmd))])
			}
			sh.waitFor("long line", func() bool { return strings.Contains(sh.tl.rows(), cmd[len(cmd)-60:]) })
			sh.enter(cmd, true)
		}},
		{"long line edited in the middle", func(sh *shell) {
			cmd := longCommand(200)
			sh.typ(cmd)
			sh.waitFor("long line", func() bool { return strings.Contains(sh.tl.rows(), cmd[len(cmd)-60:]) })
			// Move to the start and insert, so the cursor sits on the
			// first row while the line goes on below it.
			sh.typ("\x01true ")
			sh.waitScreen("true echo")
			sh.enter("true "+cmd, true)
		}},
		{"quoted string continues", func(sh *shell) {
			sh.typ(`echo "first`)
			sh.waitScreen(`echo "first`)
			sh.enter(`echo "first`, true)
			if sh.tl.Continued() {
				t.Fatal("Continued() true before the continuation prompt")
			}
			sh.waitFor("continuation prompt", func() bool { return strings.HasPrefix(sh.tl.cursorRow(), ">") })
			sh.typ(`second"`)
			sh.waitScreen(`> second"`)
			if !sh.tl.Continued() {
				t.Fatal("Continued() false after the continuation prompt")
			}
			sh.enter("echo \"first\nsecond\"", true)
			sh.typ("echo after")
			sh.waitScreen("echo after")
			sh.enter("echo after", true)
		}},
		{"ctrl-c abandons the line", func(sh *shell) {
			sh.typ("rm -rf /tmp/abandoned")
			sh.waitScreen("abandoned")
			before := sh.prompts()
			sh.typ("\x03")
			// The test writes the ^C straight to the pty (termline plays no
			// part in delivering it). On a loaded machine bash has been seen
			// to miss the SIGINT once (the kernel echoed ^C, no new prompt
			// came in 10 s); a second ^C, as a user would press, is what
			// this case then checks.
			if !sh.waitUntil(func() bool { return sh.prompts() >= before+1 }) {
				sh.t.Log("no prompt after ^C; pressing it again")
				sh.typ("\x03")
				sh.waitPrompts(before + 1)
			}
			sh.typ("echo fresh")
			sh.waitScreen("echo fresh")
			sh.enter("echo fresh", true)
		}},
		{"ctrl-l redraws", func(sh *shell) {
			sh.typ("seq 30")
			sh.waitScreen("seq 30")
			sh.enter("seq 30", true)
			sh.typ("echo redrawn")
			sh.waitScreen("echo redrawn")
			before := sh.prompts()
			sh.typ("\x0c")
			sh.waitPrompts(before + 1)
			sh.waitFor("clear", func() bool { return !strings.Contains(sh.tl.screen(), "\n30\n") })
			sh.enter("echo redrawn", true)
		}},
		{"empty line", func(sh *shell) {
			sh.enter("", true)
		}},
		{"vim alternate screen", func(sh *shell) {
			if _, err := exec.LookPath("vim"); err != nil {
				t.Skip("vim not installed")
			}
			sh.typ("vim -u NONE -N x.txt")
			sh.waitScreen("vim -u NONE -N x.txt")
			sh.enter("vim -u NONE -N x.txt", true)
			sh.waitFor("alternate screen", sh.tl.AltScreen)
			sh.typ("irm -rf /")
			sh.waitScreen("rm -rf /")
			if got, ok := sh.pressEnter(); ok {
				t.Fatalf("Line() in vim = %q, true; want ok=false", got)
			}
			sh.typ("\x1b:q!")
			sh.waitScreen(":q!")
			before := sh.prompts()
			if _, ok := sh.pressEnter(); ok {
				t.Fatal("Line() in vim ok=true")
			}
			sh.waitPrompts(before + 1)
			sh.waitFor("main screen", func() bool { return !sh.tl.AltScreen() })
			sh.typ("echo back")
			sh.waitScreen("echo back")
			sh.enter("echo back", true)
		}},
		{"less alternate screen", func(sh *shell) {
			if _, err := exec.LookPath("less"); err != nil {
				t.Skip("less not installed")
			}
			writeFile(t, filepath.Join(sh.dir, "page.txt"))
			sh.typ("less page.txt")
			sh.waitScreen("less page.txt")
			sh.enter("less page.txt", true)
			sh.waitFor("alternate screen", sh.tl.AltScreen)
			sh.typ("/")
			sh.waitFor("search prompt", func() bool { return strings.HasPrefix(sh.tl.cursorRow(), "/") })
			sh.typ("content")
			sh.waitScreen("/content")
			if got, ok := sh.pressEnter(); ok {
				t.Fatalf("Line() in less = %q, true; want ok=false", got)
			}
			before := sh.prompts()
			sh.typ("q")
			sh.waitPrompts(before + 1)
			sh.waitFor("main screen", func() bool { return !sh.tl.AltScreen() })
			sh.typ("echo out of less")
			sh.waitScreen("echo out of less")
			sh.enter("echo out of less", true)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sh := startShell(t, ps1, mark)
			tc.run(sh)
		})
	}
}

// longCommand returns an echo command n bytes long whose words put a space
// in the last column of the first two rows after the plain prompt, the case
// where a soft wrap and a hard line end look alike.
func longCommand(n int) string {
	b := []byte("echo ")
	for len(b) < n {
		b = append(b, byte('a'+len(b)%26))
		if len(b)%9 == 0 || len(b) == 73 || len(b) == 153 {
			b = append(b, ' ')
		}
	}
	return strings.TrimRight(string(b[:n]), " ") + "z"
}

func writeFile(t *testing.T, name string) {
	t.Helper()
	if err := os.WriteFile(name, []byte("some content\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
