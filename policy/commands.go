package policy

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
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
			// A here-document fed to a shell is a script.
			for _, r := range n.Redirs {
				if (r.Op == syntax.Hdoc || r.Op == syntax.DashHdoc || r.Op == syntax.WordHdoc) && r.Hdoc != nil {
					if call, ok := n.Cmd.(*syntax.CallExpr); ok && len(call.Args) > 0 && shells[path.Base(wordString(call.Args[0]))] {
						collect(wordString(r.Hdoc), depth+1, add)
					}
				}
			}
		}
		return true
	})
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
	for _, w := range words[1:] {
		if len(w) > 1 && w[0] == '-' && w[1] != '-' {
			flags = append(flags, w[1:])
		} else {
			rest = append(rest, w)
		}
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
		b.WriteString(p.Value)
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
