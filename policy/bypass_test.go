package policy

import (
	"strings"
	"testing"
)

// TestCommandBypassAttempts tries to get past the command rules of
// samplePolicy with shell syntax. Rows marked limit are documented in the
// README ("What command filtering can and cannot catch") and SECURITY.md:
// their meaning is only known when the shell runs them.
func TestCommandBypassAttempts(t *testing.T) {
	p := mustParse(t, samplePolicy)
	id := Identity{User: "alice", Groups: []string{"engineering"}}
	tgt := Target{Name: "web-1", Labels: map[string]string{"env": "staging"}}
	tests := []struct {
		cmd   string
		want  Action
		limit string // why it is not caught; empty for a caught attempt
	}{
		// Quoting and escapes.
		{`\rm -rf /`, ActionBlock, ""},
		{`r''m -rf /`, ActionBlock, ""},
		{`"r"m -rf /`, ActionBlock, ""},
		{`$'rm' -rf /`, ActionBlock, ""},
		{`$'\x72m' -rf /`, ActionBlock, ""},
		{`$'\162m' -rf /`, ActionBlock, ""},
		{`$'\u0072m' -rf /`, ActionBlock, ""},
		{`s\hutdown now`, ActionBlock, ""},
		{`mk''fs /dev/sda`, ActionBlock, ""},
		{"rm\t-rf\t/", ActionBlock, ""},
		{"rm -rf /\r", ActionBlock, ""},
		{"rm -rf / # comment", ActionBlock, ""},
		{"rm -rf / &", ActionBlock, ""},
		// Options.
		{"rm -rf -- /", ActionBlock, ""},
		{"rm -r -f -- /", ActionBlock, ""},
		{"rm --recursive --force /", ActionAllow, "long options are spelled out by the rule author (rm\\s.*--recursive)"},
		// Wrappers.
		{"command rm -rf /", ActionBlock, ""},
		{"exec rm -rf /", ActionBlock, ""},
		{"time rm -rf /", ActionBlock, ""},
		{"timeout 5 rm -rf /", ActionBlock, ""},
		{"busybox rm -rf /", ActionBlock, ""},
		{"env -i rm -rf /", ActionBlock, ""},
		{"nice -n 5 -- rm -rf /", ActionBlock, ""},
		{"watch -n1 rm -rf /", ActionBlock, ""},
		{"sudo -- rm -rf /", ActionBlock, ""},
		{"exec sudo ls", ActionReview, ""},
		// Separators, subshells, functions.
		{"rm -rf / ; ", ActionBlock, ""},
		{"echo hi\nrm -rf /", ActionBlock, ""},
		{"(cd / && rm -rf /)", ActionBlock, ""},
		{"f() { rm -rf /; }; f", ActionBlock, ""},
		// Shells within shells, here-documents, here-strings and pipes.
		{"bash -lc 'rm -rf /'", ActionBlock, ""},
		{"sh -ec 'rm -rf /'", ActionBlock, ""},
		{`bash -c "bash -c 'bash -c \"rm -rf /\"'"`, ActionBlock, ""},
		{"sh <<'EOF'\nrm -rf /\nEOF", ActionBlock, ""},
		{"bash -s <<< 'rm -rf /'", ActionBlock, ""},
		{"cat <<EOF | sh\nrm -rf /\nEOF", ActionBlock, ""},
		{"echo 'rm -rf /' | bash", ActionBlock, ""},
		{`printf 'ls\nrm -rf /\n' | sh`, ActionBlock, ""},
		{"echo reboot | sudo bash", ActionBlock, ""},
		// Case: command names are case-sensitive on the target, so
		// SHUTDOWN is not shutdown.
		{"SHUTDOWN now", ActionAllow, ""},
		// Limits: meaning known only at run time.
		{"x=rm; $x -rf /", ActionAllow, "variables"},
		{"${X:-rm} -rf /", ActionAllow, "parameter expansion"},
		{"alias r=rm; r -rf /", ActionAllow, "aliases"},
		{"echo cm0gLXJmIC8= | base64 -d | sh", ActionAllow, "computed scripts"},
		{"xargs rm -rf <<< /", ActionAllow, "arguments read from input at run time"},
		{"rm -rf //", ActionAllow, "equivalent paths are the rule author's (the rule says /(\\s|$))"},
		{"find / -delete", ActionAllow, "other programs with the same effect need their own rules"},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.cmd, "/", "∕"), func(t *testing.T) {
			d := p.CheckCommand(id, tgt, tc.cmd)
			if d.Action != tc.want {
				t.Fatalf("CheckCommand(%q) = %v (rule %q, matched %q), want %v (limit: %q); candidates %q",
					tc.cmd, d.Action, d.Rule, d.Matched, tc.want, tc.limit, CommandCandidates(tc.cmd))
			}
		})
	}
}

func TestANSICQuotes(t *testing.T) {
	for in, want := range map[string]string{
		`rm`: "rm", `\x72m`: "rm", `\162m`: "rm", `\u0072m`: "rm", `\U00000072m`: "rm",
		`a\nb`: "a\nb", `\'`: "'", `\\`: `\`, `\q`: `\q`, `\x`: `\x`, `\cA`: "\x01", `\`: `\`,
	} {
		if got := ansiC(in); got != want {
			t.Errorf("ansiC(%q) = %q, want %q", in, got, want)
		}
	}
}
