package policy

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// Action is what a rule decides.
type Action int

// Actions, in increasing strength: Block beats Review beats Allow.
const (
	ActionAllow Action = iota
	ActionReview
	ActionBlock
)

func (a Action) String() string {
	switch a {
	case ActionBlock:
		return "block"
	case ActionReview:
		return "review"
	default:
		return "allow"
	}
}

// Decision is the typed result of evaluating a rule set.
type Decision struct {
	Action Action
	// Rule is the rule that decided (a regex, a SQL kind, a Kubernetes rule).
	Rule string
	// Matched is the part of the input the rule matched.
	Matched string
	// Reason is a sentence fit to show the user.
	Reason string
}

// Blocked reports whether d refuses the operation.
func (d Decision) Blocked() bool { return d.Action == ActionBlock }

// Held reports whether d holds the operation for approval.
func (d Decision) Held() bool { return d.Action == ActionReview }

type compiledCommands struct {
	block, review []*regexp.Regexp
}

func compileCommands(r CommandRules) (compiledCommands, error) {
	var c compiledCommands
	var errs []string
	for _, s := range r.Block {
		re, err := regexp.Compile(s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("block %q: %v", s, err))
			continue
		}
		c.block = append(c.block, re)
	}
	for _, s := range r.Review {
		re, err := regexp.Compile(s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("review %q: %v", s, err))
			continue
		}
		c.review = append(c.review, re)
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return c, nil
}

// CheckCommand decides an exec request or an interactive command line for id
// on target t: the top-level commands rules plus those of every role that
// reaches t. Block beats review.
//
// Each rule is matched against the line as typed and against every simple
// command found by parsing the line as a POSIX shell script (mvdan.cc/sh):
// quotes removed, the directory of the program stripped (/bin/rm → rm),
// wrappers such as sudo, env, command, exec, nohup, nice, timeout and
// `sh -c` / `bash -c` / eval peeled off, here-documents fed to a shell and
// command substitutions parsed too. Short option clusters are also tried
// merged (-r -f → -rf) and reordered (-fr → -rf). Words the shell would only
// know at run time (variables, globs) are kept as written: see the README's
// limits of command filtering.
func (p *Policy) CheckCommand(id Identity, t Target, line string) Decision {
	sets := []compiledCommands{p.commands}
	for _, r := range p.RolesReaching(id, t) {
		sets = append(sets, r.commands)
	}
	return checkCommand(sets, line)
}

func checkCommand(sets []compiledCommands, line string) Decision {
	cands := CommandCandidates(line)
	best := Decision{Action: ActionAllow}
	for _, s := range sets {
		for _, re := range s.block {
			for _, c := range cands {
				if re.MatchString(c) {
					return Decision{Action: ActionBlock, Rule: re.String(), Matched: c,
						Reason: fmt.Sprintf("command blocked by policy (rule %s)", re)}
				}
			}
		}
		if best.Action == ActionReview {
			continue
		}
		for _, re := range s.review {
			for _, c := range cands {
				if re.MatchString(c) {
					best = Decision{Action: ActionReview, Rule: re.String(), Matched: c,
						Reason: fmt.Sprintf("command needs approval (rule %s)", re)}
				}
			}
		}
	}
	return best
}

// CommandCandidates returns the strings command rules are matched against.
func CommandCandidates(line string) []string {
	set := map[string]bool{}
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s != "" {
			set[s] = true
		}
	}
	add(line)
	add(strings.Join(strings.Fields(line), " "))
	collect(line, 0, add)
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

const maxDepth = 4

var wrappers = map[string]bool{
	"sudo": true, "doas": true, "env": true, "command": true, "exec": true, "nohup": true,
	"nice": true, "ionice": true, "timeout": true, "time": true, "builtin": true, "stdbuf": true,
	"setsid": true, "chroot": false, "xargs": true, "watch": true, "busybox": true, "su": false,
}

var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "ash": true, "busybox": false}

func collect(src string, depth int, add func(string)) {
	if depth > maxDepth {
		return
	}
	f, err := syntax.NewParser(syntax.KeepComments(false)).Parse(strings.NewReader(src), "")
	if err != nil {
		// Unparseable (e.g. an unterminated quote typed interactively):
		// fall back to splitting on shell separators.
		for _, part := range regexp.MustCompile(`;|&&|\|\||\||\n|\$\(|`+"`").Split(src, -1) {
			add(strings.Join(strings.Fields(strings.Trim(part, "()")), " "))
		}
		return
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.CallExpr:
			words := make([]string, 0, len(n.Args))
			for _, w := range n.Args {
				words = append(words, wordString(w))
			}
			callCandidates(words, depth, add)
		case *syntax.Stmt:
			// A here-document or here-string fed to a shell is a script.
			if isShellCall(n) {
				if script, ok := stdinText(n); ok {
					collect(script, depth+1, add)
				}
			}
		case *syntax.BinaryCmd:
			// Literal text piped into a shell is a script too:
			// echo 'rm -rf /' | sh, cat <<EOF | bash.
			if (n.Op == syntax.Pipe || n.Op == syntax.PipeAll) && isShellCall(n.Y) {
				if script, ok := pipedText(n.X); ok {
					collect(script, depth+1, add)
				}
			}
		}
		return true
	})
}

// isShellCall reports whether st runs a shell reading its script from
// standard input (no -c).
func isShellCall(st *syntax.Stmt) bool {
	call, ok := st.Cmd.(*syntax.CallExpr)
	if !ok || len(call.Args) == 0 {
		return false
	}
	words := make([]string, 0, len(call.Args))
	for _, w := range call.Args {
		words = append(words, wordString(w))
	}
	for len(words) > 0 && wrappers[path.Base(words[0])] {
		words = skipWrapperArgs(path.Base(words[0]), words[1:])
	}
	if len(words) == 0 || !shells[path.Base(words[0])] {
		return false
	}
	for _, w := range words[1:] {
		if strings.HasPrefix(w, "-") && !strings.HasPrefix(w, "--") && strings.Contains(w, "c") {
			return false
		}
	}
	return true
}

// stdinText returns the text a here-document or here-string of st feeds to
// its standard input.
func stdinText(st *syntax.Stmt) (string, bool) {
	for _, r := range st.Redirs {
		switch {
		case (r.Op == syntax.Hdoc || r.Op == syntax.DashHdoc) && r.Hdoc != nil:
			return wordString(r.Hdoc), true
		case r.Op == syntax.WordHdoc && r.Word != nil:
			return wordString(r.Word), true
		}
	}
	return "", false
}

// pipedText returns the literal text st writes to a pipe when it is echo,
// printf or cat of a here-document or here-string.
func pipedText(st *syntax.Stmt) (string, bool) {
	call, ok := st.Cmd.(*syntax.CallExpr)
	if !ok || len(call.Args) == 0 {
		return "", false
	}
	args := make([]string, 0, len(call.Args))
	for _, w := range call.Args {
		args = append(args, wordString(w))
	}
	switch path.Base(args[0]) {
	case "echo", "printf":
		rest := args[1:]
		for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
			rest = rest[1:]
		}
		// printf and echo -e turn \n into a line break; reading it as one
		// whatever the flags only makes the check stricter.
		return strings.ReplaceAll(strings.Join(rest, " "), `\n`, "\n"), true
	case "cat":
		return stdinText(st)
	}
	return "", false
}

func callCandidates(words []string, depth int, add func(string)) {
	for len(words) > 0 {
		// Leading assignments are parsed into CallExpr.Assigns, so words[0]
		// is the program.
		words = slices.Clone(words)
		words[0] = path.Base(words[0])
		emitForms(words, add)
		prog := words[0]
		switch {
		case shells[prog]:
			for i := 1; i < len(words); i++ {
				if strings.HasPrefix(words[i], "-") && strings.Contains(words[i], "c") && !strings.HasPrefix(words[i], "--") && i+1 < len(words) {
					collect(words[i+1], depth+1, add)
					return
				}
			}
			return
		case prog == "eval":
			collect(strings.Join(words[1:], " "), depth+1, add)
			return
		case wrappers[prog]:
			words = skipWrapperArgs(prog, words[1:])
		default:
			return
		}
	}
}

// skipWrapperArgs drops the wrapper's own options and arguments.
func skipWrapperArgs(prog string, args []string) []string {
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "--":
			return args[1:]
		case prog == "env" && strings.Contains(a, "=") && !strings.HasPrefix(a, "-"):
			args = args[1:]
		case (prog == "sudo" || prog == "doas") && (a == "-u" || a == "-g" || a == "-C" || a == "-h" || a == "-p" || a == "-r" || a == "-t" || a == "-U" || a == "-D"):
			if len(args) < 2 {
				return nil
			}
			args = args[2:]
		case (prog == "nice" || prog == "ionice") && (a == "-n" || a == "-c"):
			if len(args) < 2 {
				return nil
			}
			args = args[2:]
		case prog == "timeout" && !strings.HasPrefix(a, "-"):
			return args[1:] // the duration
		case strings.HasPrefix(a, "-"):
			args = args[1:]
		default:
			return args
		}
	}
	return nil
}

// emitForms adds the call as written and with short options merged/sorted.
func emitForms(words []string, add func(string)) {
	add(strings.Join(words, " "))
	var flags []string
	var rest []string
	endOpts := false
	for _, w := range words[1:] {
		switch {
		case w == "--" && !endOpts:
			// The end-of-options marker changes nothing for rules.
			endOpts = true
		case !endOpts && len(w) > 1 && w[0] == '-' && w[1] != '-':
			flags = append(flags, w[1:])
		default:
			rest = append(rest, w)
		}
	}
	if endOpts {
		add(strings.Join(append([]string{words[0]}, slices.DeleteFunc(slices.Clone(words[1:]), func(w string) bool { return w == "--" })...), " "))
	}
	if len(flags) == 0 {
		return
	}
	merged := strings.Join(flags, "")
	letters := strings.Split(merged, "")
	sort.Strings(letters)
	sorted := strings.Join(letters, "")
	rev := slices.Clone(letters)
	slices.Reverse(rev)
	for _, f := range []string{merged, sorted, strings.Join(rev, "")} {
		add(strings.Join(append([]string{words[0], "-" + f}, rest...), " "))
	}
}

// wordString returns the word with quotes removed where it is literal, and
// as written where it expands at run time.
func wordString(w *syntax.Word) string {
	var b strings.Builder
	for _, part := range w.Parts {
		writePart(&b, part)
	}
	return b.String()
}

func writePart(b *strings.Builder, part syntax.WordPart) {
	switch p := part.(type) {
	case *syntax.Lit:
		b.WriteString(unescape(p.Value))
	case *syntax.SglQuoted:
		if p.Dollar {
			b.WriteString(ansiC(p.Value))
		} else {
			b.WriteString(p.Value)
		}
	case *syntax.DblQuoted:
		for _, q := range p.Parts {
			writePart(b, q)
		}
	default:
		var sb strings.Builder
		_ = syntax.NewPrinter().Print(&sb, part)
		b.WriteString(sb.String())
	}
}

// unescape removes the shell's backslash escapes from an unquoted literal.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			if s[i] == '\n' {
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ansiC decodes the backslash escapes of a bash $'...' string.
func ansiC(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'e', 'E':
			b.WriteByte(0x1b)
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'c':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i] & 0x1f)
			}
		case 'x', 'u', 'U', '0', '1', '2', '3', '4', '5', '6', '7':
			base, max := 16, map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			start := i + 1
			if c >= '0' && c <= '7' {
				base, max, start = 8, 3, i
			}
			j := start
			for j < len(s) && j-start < max && isDigitIn(s[j], base) {
				j++
			}
			if j == start {
				b.WriteByte('\\')
				b.WriteByte(c)
				continue
			}
			n, _ := strconv.ParseUint(s[start:j], base, 32)
			if c == 'u' || c == 'U' {
				b.WriteRune(rune(n))
			} else {
				b.WriteByte(byte(n))
			}
			i = j - 1
		default: // \\ \' \" \? and unknown escapes
			if c != '\\' && c != '\'' && c != '"' && c != '?' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isDigitIn(c byte, base int) bool {
	switch {
	case c >= '0' && c <= '7':
		return true
	case c == '8' || c == '9':
		return base == 16
	case base == 16 && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
		return true
	}
	return false
}
