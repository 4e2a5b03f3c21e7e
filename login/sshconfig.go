package login

import (
	"fmt"
	"path/filepath"
	"strings"
)

// BastionAlias is the ssh_config Host alias of the bastion in the snippet.
const BastionAlias = "jumpgate"

// SnippetOptions describe the ssh_config snippet.
type SnippetOptions struct {
	SSHDir      string // absolute
	BastionHost string
	BastionPort string
	User        string // login name sent to the bastion (identity comes from the certificate)
	// Targets are jumpgate target names to route through the bastion; when
	// empty the target block is printed commented out, as a template.
	Targets []string
}

// SSHConfigSnippet returns ssh_config text: a Host block for the bastion
// (matching the alias "jumpgate" and, unless it is a loopback address, the
// bastion's host name) and a ProxyJump block for targets.
func SSHConfigSnippet(o SnippetOptions) string {
	q := func(p string) string { return sshQuote(filepath.Join(o.SSHDir, p)) }
	identity := fmt.Sprintf(`    IdentityFile %s
    CertificateFile %s
    UserKnownHostsFile %s
    IdentitiesOnly yes
`, q(KeyFile), q(CertFile), q(KnownHostsFile))

	hosts := BastionAlias
	if !isLoopback(o.BastionHost) && o.BastionHost != BastionAlias {
		hosts += " " + o.BastionHost
	}
	var b strings.Builder
	b.WriteString("# jumpgate: add to ~/.ssh/config\n")
	fmt.Fprintf(&b, "Host %s\n    HostName %s\n    Port %s\n", hosts, o.BastionHost, o.BastionPort)
	if o.User != "" {
		fmt.Fprintf(&b, "    User %s\n", o.User)
	}
	b.WriteString(identity)
	b.WriteString("\n")

	jump := "    ProxyJump " + BastionAlias + "\n"
	if len(o.Targets) > 0 {
		fmt.Fprintf(&b, "# Targets behind the bastion: ssh LOGIN@TARGET\nHost %s\n%s%s", strings.Join(o.Targets, " "), jump, identity)
		return b.String()
	}
	b.WriteString("# Targets behind the bastion: put their jumpgate names on the Host line,\n")
	b.WriteString("# uncomment, then run: ssh LOGIN@TARGET  (or ssh -J " + BastionAlias + " LOGIN@TARGET)\n")
	for _, line := range strings.Split(strings.TrimRight("Host TARGET1 TARGET2\n"+jump+identity, "\n"), "\n") {
		b.WriteString("#" + line + "\n")
	}
	return b.String()
}

// sshQuote quotes a path for ssh_config when it has spaces.
func sshQuote(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}
