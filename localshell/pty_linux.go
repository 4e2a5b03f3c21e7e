//go:build linux

package localshell

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal of the requested size and modes. The
// master comes back non-blocking and registered with Go's poller (creack/pty
// leaves it in blocking mode, where Close cannot interrupt a Read), so
// closing it always releases its copier. The tty is owned by the account
// that will use it, mode 0620 group tty, as sshd leaves it.
func openPTY(req *ptyRequest, cred *syscall.Credential) (*os.File, *os.File, error) {
	m, t, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("localshell: opening a pty: %w", err)
	}
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	m.Close()
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("localshell: pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		t.Close()
		return nil, nil, fmt.Errorf("localshell: pty master: %w", err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	fail := func(err error) (*os.File, *os.File, error) {
		master.Close()
		t.Close()
		return nil, nil, err
	}
	if err := setWinsize(master, req.Win); err != nil {
		return fail(err)
	}
	if err := setTermModes(t, req.Modes); err != nil {
		return fail(err)
	}
	if cred != nil {
		gid := int(cred.Gid)
		if g, lerr := user.LookupGroup("tty"); lerr == nil {
			if n, perr := strconv.Atoi(g.Gid); perr == nil {
				gid = n
			}
		}
		if err := os.Chown(t.Name(), int(cred.Uid), gid); err != nil {
			return fail(fmt.Errorf("localshell: pty owner: %w", err))
		}
		if err := os.Chmod(t.Name(), 0o620); err != nil {
			return fail(fmt.Errorf("localshell: pty mode: %w", err))
		}
	}
	return master, t, nil
}

// setWinsize sets the terminal size through the master; the kernel sends
// SIGWINCH to the terminal's foreground process group.
func setWinsize(master *os.File, w window) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return fmt.Errorf("localshell: window size: %w", err)
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		opErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: w.Rows, Col: w.Cols, Xpixel: w.Width, Ypixel: w.Height})
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return fmt.Errorf("localshell: window size: %w", err)
	}
	return nil
}

// foregroundGroup returns the terminal's foreground process group.
func foregroundGroup(master *os.File) (int, error) {
	rc, err := master.SyscallConn()
	if err != nil {
		return 0, err
	}
	var pgrp int
	var opErr error
	if err := rc.Control(func(fd uintptr) { pgrp, opErr = unix.IoctlGetInt(int(fd), unix.TIOCGPGRP) }); err != nil {
		return 0, err
	}
	return pgrp, opErr
}
