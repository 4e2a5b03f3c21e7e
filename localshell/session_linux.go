//go:build linux

package localshell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

var errChannelClosed = errors.New("localshell: session channel closed")

// session is one "session" channel. Its requests are handled in order by
// a single goroutine (serve), which owns every field.
type session struct {
	srv    *Server
	c      *conn
	ch     gossh.Channel
	logger *slog.Logger
	env    map[string]string // allowlisted variables from env requests
	pty    *ptyRequest
	proc   *process // nil until shell, exec or subsystem started it
}

// handleChannel is gliderlabs' handler for "session" channels. It replaces
// gliderlabs' own session handling, which accepts every env request,
// rewrites output for ptys and reports exit-status 0 after a signal.
func (s *Server) handleChannel(_ *gliderssh.Server, sc *gossh.ServerConn, nc gossh.NewChannel, gctx gliderssh.Context) {
	c, _ := gctx.Value(connKey{}).(*conn)
	if c == nil {
		_ = nc.Reject(gossh.ConnectionFailed, "localshell: connection has no target")
		return
	}
	if !s.trackSession() {
		_ = nc.Reject(gossh.ConnectionFailed, "localshell: server closing")
		return
	}
	defer s.wg.Done()
	if sc.User() != c.target.User {
		_ = nc.Reject(gossh.Prohibited, "localshell: login does not match the target")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		c.logger.Debug("localshell: accepting a session", "err", err)
		return
	}
	ss := &session{
		srv:    s,
		c:      c,
		ch:     ch,
		logger: c.logger.With("session", s.ids.Add(1)),
		env:    map[string]string{},
	}
	ss.serve(reqs)
}

// serve handles the channel's requests until it closes, then ends and joins
// the process.
func (ss *session) serve(reqs <-chan *gossh.Request) {
	ctx, cancel := context.WithCancelCause(ss.c.ctx)
	defer func() {
		cancel(errChannelClosed)
		if ss.proc != nil {
			ss.proc.wait()
		}
		_ = ss.ch.Close()
	}()
	for req := range reqs {
		ok, started := ss.handle(req)
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
		if started {
			// Only after the reply: the client must see the request
			// succeed before any output or the exit status.
			ss.proc.run(ctx, ss.ch, ss.logger)
		}
	}
}

// handle serves one request; started reports that it started the process.
func (ss *session) handle(req *gossh.Request) (ok, started bool) {
	switch req.Type {
	case "pty-req":
		if ss.proc != nil || ss.pty != nil {
			return false, false
		}
		p, err := parsePtyRequest(req.Payload)
		if err != nil {
			ss.logger.Debug("localshell: refused pty-req", "err", err)
			return false, false
		}
		ss.pty = &p
		return true, false
	case "window-change":
		w, err := parseWindowChange(req.Payload)
		if err != nil || ss.pty == nil {
			return false, false
		}
		ss.pty.Win = w
		if ss.proc != nil {
			if err := ss.proc.resize(w); err != nil {
				ss.logger.Debug("localshell: window-change", "err", err)
				return false, false
			}
		}
		return true, false
	case "env":
		name, value, err := parseEnv(req.Payload)
		if err != nil || ss.proc != nil {
			return false, false
		}
		if !envAllowed(name, value) {
			ss.logger.Debug("localshell: refused env variable", "name", name)
			return false, false
		}
		ss.env[name] = value
		return true, false
	case "shell", "exec", "subsystem":
		if ss.proc != nil {
			return false, false
		}
		sp, err := ss.spec(req)
		if err != nil {
			ss.logger.Warn("localshell: refused "+req.Type, "err", err)
			return false, false
		}
		p, err := startProcess(sp, ss.srv.killGrace)
		if err != nil {
			ss.logger.Error("localshell: "+req.Type, "err", err)
			return false, false
		}
		ss.logger.Info("localshell: started", "request", req.Type, "pid", p.pid, "pty", sp.pty != nil)
		ss.proc = p
		return true, true
	case "signal":
		name, err := parseString(req.Payload)
		sig, known := sshSignals[name]
		if err != nil || !known || ss.proc == nil {
			return false, false
		}
		if err := ss.proc.signalGroup(sig); err != nil {
			ss.logger.Debug("localshell: signal", "signal", name, "err", err)
			return false, false
		}
		return true, false
	case "break":
		if ss.proc == nil {
			return false, false
		}
		return ss.proc.sendBreak() == nil, false
	default:
		// x11-req, auth-agent-req@openssh.com, xon-xoff and anything else.
		return false, false
	}
}

// spec builds what a shell, exec or subsystem request runs, like sshd:
// a shell is the account's shell as a login shell ("-bash"); a command is
// `shell -c CMD`; the sftp subsystem is the system's sftp-server. Shells and
// commands run in the pty when one was requested; subsystems never do.
func (ss *session) spec(req *gossh.Request) (spec, error) {
	acct := ss.c.acct
	sp := spec{path: acct.shell, env: ss.environ(), dir: acct.dir, cred: acct.cred, pty: ss.pty}
	base := filepath.Base(acct.shell)
	switch req.Type {
	case "shell":
		sp.args = []string{"-" + base}
	case "exec":
		cmd, err := parseCommand(req.Payload)
		if err != nil {
			return spec{}, err
		}
		sp.args = []string{base, "-c", cmd}
	case "subsystem":
		name, err := parseString(req.Payload)
		if err != nil {
			return spec{}, err
		}
		if name != "sftp" {
			return spec{}, fmt.Errorf("localshell: unknown subsystem %q", name)
		}
		path := ss.srv.sftpServer()
		if path == "" {
			return spec{}, fmt.Errorf("localshell: subsystem sftp: no sftp-server in %v (Debian package openssh-sftp-server)", ss.srv.sftpServers)
		}
		sp.path, sp.args, sp.pty = path, []string{"sftp-server"}, nil
	}
	return sp, nil
}

// environ is the child's whole environment: HOME, USER, LOGNAME, SHELL,
// PATH, TERM (from pty-req, else from an env request) and the allowlisted
// variables the client sent (LANG, LC_*, TZ, COLORTERM).
func (ss *session) environ() []string {
	acct := ss.c.acct
	vars := map[string]string{}
	for k, v := range ss.env {
		vars[k] = v
	}
	path := "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
	if acct.uid == 0 {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	vars["HOME"] = acct.home
	vars["USER"] = acct.name
	vars["LOGNAME"] = acct.name
	vars["SHELL"] = acct.shell
	vars["PATH"] = path
	if ss.pty != nil && ss.pty.Term != "" {
		vars["TERM"] = ss.pty.Term
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// sftpServer returns the first sftp-server program present, or "".
func (s *Server) sftpServer() string {
	for _, p := range s.sftpServers {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}
