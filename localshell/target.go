package localshell

import "errors"

// Target is one local target: the shell runs on this host as User.
type Target struct {
	// Name is the target's name in the inventory; used in logs.
	Name string
	// User is the OS account the shell runs as. The login the user asked
	// for must equal it.
	User string
	// Shell is the program run for shells, commands (`Shell -c CMD`) and
	// nothing else. Empty: the account's login shell from the passwd
	// database, or /bin/bash when the account has none.
	Shell string
}

var (
	// ErrClosed is returned by Connect after Close.
	ErrClosed = errors.New("localshell: server closed")
	// ErrLoginMismatch is returned when the requested login is not the
	// target's account.
	ErrLoginMismatch = errors.New("localshell: login is not the target's account")
	// ErrUnknownUser is returned when the target's account does not exist.
	ErrUnknownUser = errors.New("localshell: unknown OS account")
	// ErrNotPermitted is returned when the process is not root and the
	// target's account is not the current user.
	ErrNotPermitted = errors.New("localshell: running a shell as another account needs root")
	// ErrInvalidTarget is returned for a target that cannot be served (no
	// user, a shell that is not an absolute path to an executable).
	ErrInvalidTarget = errors.New("localshell: invalid target")
	// ErrUnsupported is returned on systems other than Linux.
	ErrUnsupported = errors.New("localshell: local targets are supported on Linux only")
)
