//go:build linux

package localshell

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// account is the resolved OS identity a target's processes run as.
type account struct {
	name  string
	uid   int
	gid   int
	home  string // $HOME
	dir   string // working directory: home, or / when home is not a directory
	shell string
	// cred switches the child to the account; nil runs it with the
	// current process's credentials (the account is the current user).
	cred *syscall.Credential
}

// resolveAccount looks the target's account up and decides how its
// processes are started, failing early and clearly rather than at the first
// session.
func (s *Server) resolveAccount(t Target) (*account, error) {
	if t.User == "" {
		return nil, fmt.Errorf("%w: target %q has no user", ErrInvalidTarget, t.Name)
	}
	u, err := user.Lookup(t.User)
	if err != nil {
		return nil, fmt.Errorf("%w: %q (target %q): %w", ErrUnknownUser, t.User, t.Name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: %q has a non-numeric uid/gid %q/%q", ErrUnknownUser, t.User, u.Uid, u.Gid)
	}
	var groups []uint32
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	} else {
		s.logger.Warn("localshell: supplementary groups unknown, running with the primary group only",
			"user", t.User, "err", err)
	}
	cred, err := credentialFor(s.euid, s.uid, t.User, uid, gid, groups)
	if err != nil {
		return nil, err
	}

	sh := t.Shell
	if sh == "" {
		sh = loginShell(s.passwdFile, t.User)
	}
	if sh == "" {
		sh = "/bin/bash"
	}
	if !filepath.IsAbs(sh) {
		return nil, fmt.Errorf("%w: target %q: shell %q is not an absolute path", ErrInvalidTarget, t.Name, sh)
	}
	if fi, err := os.Stat(sh); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%w: target %q: shell %q is not an executable file", ErrInvalidTarget, t.Name, sh)
	}

	home := u.HomeDir
	dir := "/"
	if fi, err := os.Stat(home); home != "" && err == nil && fi.IsDir() {
		dir = home
	}
	if home == "" {
		home = "/"
	}
	return &account{name: u.Username, uid: uid, gid: gid, home: home, dir: dir, shell: sh, cred: cred}, nil
}

// credentialFor decides whose credentials a child runs with. Root may run
// any account: a non-root account gets its uid, gid and supplementary
// groups. A non-root process can only run its own account.
func credentialFor(euid, curUID int, name string, uid, gid int, groups []uint32) (*syscall.Credential, error) {
	if euid == 0 {
		if uid == 0 {
			return nil, nil
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, nil
	}
	if uid != curUID {
		return nil, fmt.Errorf("%w: this process runs as uid %d, target account %q is uid %d", ErrNotPermitted, curUID, name, uid)
	}
	return nil, nil
}

// loginShell returns the login shell of name in a passwd(5) file, or "".
// os/user does not expose it. The file is the system's own, not input from
// users.
func loginShell(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name {
			return strings.TrimSpace(fields[6])
		}
	}
	return ""
}
