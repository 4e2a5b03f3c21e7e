package bastion

import (
	"fmt"
	"sort"
	"strings"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// handleBastionSession answers `ssh bastion` itself: there is no shell on
// the bastion, so it lists the targets the user can reach and how.
func (s *Server) handleBastionSession(srv *gliderssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, gctx gliderssh.Context) {
	u := userOf(gctx, conn)
	if u == nil {
		nc.Reject(gossh.Prohibited, "not authenticated")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	for r := range reqs {
		switch r.Type {
		case "pty-req", "env", "window-change":
			_ = r.Reply(r.Type != "env", nil)
		case "shell", "exec":
			_ = r.Reply(true, nil)
			fmt.Fprint(ch, strings.ReplaceAll(s.banner(u), "\n", "\r\n"))
			_, _ = ch.SendRequest("exit-status", false, gossh.Marshal(exitStatus{0}))
			return
		default:
			_ = r.Reply(false, nil)
		}
	}
}

func (s *Server) banner(u *User) string {
	var b strings.Builder
	fmt.Fprintf(&b, "jumpgate bastion: you are %s. There is no shell here.\n", u.Name)
	pol := s.cfg.Policy.Current()
	var lines []string
	for _, t := range s.cfg.Targets() {
		a := pol.AccessTo(u.Identity(), policyTarget(t))
		if !a.Allowed {
			continue
		}
		switch t.Kind {
		case "ssh", "local":
			login := "LOGIN"
			if len(a.Logins) > 0 {
				login = a.Logins[0]
			}
			lines = append(lines, fmt.Sprintf("  %-20s ssh -J <bastion> %s@%s   (logins: %s)", t.Name, login, t.Name, strings.Join(a.Logins, ", ")))
		case "postgres":
			lines = append(lines, fmt.Sprintf("  %-20s ssh -N -L 15432:%s:5432 <bastion>, then psql -h 127.0.0.1 -p 15432", t.Name, t.Name))
		case "kubernetes":
			lines = append(lines, fmt.Sprintf("  %-20s jumpgate kube-config %s; ssh -N -L 16443:%s:443 <bastion>", t.Name, t.Name, t.Name))
		}
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		b.WriteString("No target is open to you.\n")
	} else {
		b.WriteString("Targets you can reach:\n")
		b.WriteString(strings.Join(lines, "\n"))
		b.WriteString("\n")
	}
	return b.String()
}
