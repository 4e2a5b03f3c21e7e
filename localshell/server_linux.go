//go:build linux

package localshell

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// Server runs in-process SSH servers for local targets. The zero value is
// not usable; call New. A Server is safe for concurrent use.
//
// Lifetimes nest Server → conn (one per Connect) → session (one per
// session channel) → process. Server.mu guards closed and conns only; it is
// never held while waiting.
type Server struct {
	logger  *slog.Logger
	ssh     *gliderssh.Server
	hostKey gossh.PublicKey
	initErr error

	// killGrace is how long a process group has between SIGHUP and SIGKILL
	// when its session is ended from outside.
	killGrace time.Duration
	// sftpServers are the candidate sftp-server programs; the first that
	// exists serves the "sftp" subsystem.
	sftpServers []string
	// passwdFile is where login shells are looked up.
	passwdFile string
	// euid and uid are the process's credentials (fields for tests).
	euid, uid int

	ids atomic.Uint64

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{}
	// wg counts every goroutine the Server owns: connections and sessions.
	// Add happens only under mu while !closed, so Close's Wait is final.
	wg sync.WaitGroup
}

// conn is one Connect: an in-memory socket pair whose server end is served
// by gliderlabs/ssh and whose client end is behind the returned *ssh.Client.
type conn struct {
	id     uint64
	target Target
	acct   *account
	logger *slog.Logger
	ctx    context.Context // ends the connection and every process on it
	cancel context.CancelCauseFunc
	server net.Conn
	client net.Conn
}

// connRef carries the conn through gliderlabs' ConnCallback to the channel
// handlers.
type connRef struct {
	net.Conn
	c *conn
}

type connKey struct{}

var (
	errServerClosing = errors.New("localshell: server closing")
	errConnEnded     = errors.New("localshell: connection ended")
)

// New returns a Server with a fresh ed25519 host key that only its own
// clients pin. logger may be nil.
func New(logger *slog.Logger) *Server {
	return newServer(logger, rand.Reader)
}

func newServer(logger *slog.Logger, random io.Reader) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		logger:      logger,
		killGrace:   2 * time.Second,
		sftpServers: []string{"/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server"},
		passwdFile:  "/etc/passwd",
		euid:        os.Geteuid(),
		uid:         os.Getuid(),
		conns:       map[*conn]struct{}{},
	}
	_, priv, err := ed25519.GenerateKey(random)
	if err != nil {
		s.initErr = fmt.Errorf("localshell: generating the host key: %w", err)
		return s
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		s.initErr = fmt.Errorf("localshell: host key signer: %w", err)
		return s
	}
	s.hostKey = signer.PublicKey()
	// No auth handlers: gliderlabs sets NoClientAuth. That is safe because
	// the server side of a connection is only ever the socket pair Connect
	// creates after the bastion authenticated and authorized the user and
	// the login was checked against the target; nothing listens, and no
	// byte from outside this process can reach the server end.
	s.ssh = &gliderssh.Server{
		Version:           "jumpgate-localshell",
		HostSigners:       []gliderssh.Signer{signer},
		Handler:           func(gliderssh.Session) {}, // never called: sessions have their own channel handler
		ChannelHandlers:   map[string]gliderssh.ChannelHandler{"session": s.handleChannel},
		RequestHandlers:   map[string]gliderssh.RequestHandler{},
		SubsystemHandlers: map[string]gliderssh.SubsystemHandler{},
		ConnCallback: func(ctx gliderssh.Context, nc net.Conn) net.Conn {
			if r, ok := nc.(*connRef); ok {
				ctx.SetValue(connKey{}, r.c)
			}
			return nc
		},
	}
	return s
}

// Connect returns a client connected to a fresh in-process server
// connection for target t. login is the login the user asked for; it must be
// t.User. The bastion must have authenticated and authorized the user: no
// authentication happens here.
//
// ctx bounds the whole connection, not only the handshake: when it is
// cancelled the connection is closed and the process group of every
// session on it is sent SIGHUP, then SIGKILL after a short grace. Closing
// the returned client ends the connection the same way.
func (s *Server) Connect(ctx context.Context, t Target, login string) (*gossh.Client, error) {
	if s.initErr != nil {
		return nil, s.initErr
	}
	if login != t.User {
		return nil, fmt.Errorf("%w: target %q runs as %q, login %q", ErrLoginMismatch, t.Name, t.User, login)
	}
	acct, err := s.resolveAccount(t)
	if err != nil {
		return nil, err
	}
	serverEnd, clientEnd, err := socketPair()
	if err != nil {
		return nil, err
	}
	id := s.ids.Add(1)
	cctx, cancel := context.WithCancelCause(ctx)
	c := &conn{
		id:     id,
		target: t,
		acct:   acct,
		logger: s.logger.With("target", t.Name, "user", acct.name, "conn", id),
		ctx:    cctx,
		cancel: cancel,
		server: serverEnd,
		client: clientEnd,
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel(ErrClosed)
		serverEnd.Close()
		clientEnd.Close()
		return nil, ErrClosed
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go s.serveConn(c)

	cfg := &gossh.ClientConfig{
		User:              login,
		HostKeyCallback:   gossh.FixedHostKey(s.hostKey),
		HostKeyAlgorithms: []string{gossh.KeyAlgoED25519},
	}
	cc, chans, reqs, err := gossh.NewClientConn(clientEnd, "localshell-"+t.Name, cfg)
	if err != nil {
		cancel(err)
		if cause := context.Cause(cctx); cause != nil && !errors.Is(cause, err) {
			return nil, fmt.Errorf("localshell: connecting to target %q: %w (%w)", t.Name, err, cause)
		}
		return nil, fmt.Errorf("localshell: connecting to target %q: %w", t.Name, err)
	}
	c.logger.Debug("localshell: connected")
	return gossh.NewClient(cc, chans, reqs), nil
}

// serveConn runs gliderlabs on the server end until the connection ends
// (the client closed it, ctx was cancelled, or the Server is closing).
func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	done := make(chan struct{})
	go func() { // joined below through done
		defer close(done)
		s.ssh.HandleConn(&connRef{Conn: c.server, c: c})
	}()
	select {
	case <-c.ctx.Done():
	case <-done:
	}
	c.cancel(errConnEnded)
	c.server.Close()
	c.client.Close()
	<-done
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.logger.Debug("localshell: connection ended", "cause", context.Cause(c.ctx))
}

// trackSession counts a session goroutine; false once the Server is closed.
func (s *Server) trackSession() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Close ends every connection, kills every process group (SIGHUP, then
// SIGKILL after the grace) and waits until every process is reaped and
// every goroutine the Server started has returned. Connect fails with
// ErrClosed afterwards. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.cancel(errServerClosing)
	}
	s.wg.Wait()
	return nil
}

// socketPair returns the two ends of a connected AF_UNIX stream socket
// pair. Unlike net.Pipe it buffers in the kernel, as TCP does, so neither
// SSH transport can stall the other on a synchronous write.
func socketPair() (net.Conn, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("localshell: socketpair: %w", err)
	}
	var ends [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "localshell-socketpair")
		ends[i], err = net.FileConn(f) // dups the descriptor
		f.Close()
		if err != nil {
			if i == 1 {
				ends[0].Close()
			} else {
				unix.Close(fds[1])
			}
			return nil, nil, fmt.Errorf("localshell: socketpair: %w", err)
		}
	}
	return ends[0], ends[1], nil
}
