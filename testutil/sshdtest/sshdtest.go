package sshdtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultSSHD is the sshd binary Start runs unless Options.SSHD says
// otherwise.
const DefaultSSHD = "/usr/sbin/sshd"

// privsepDir is sshd's compiled-in privilege separation directory on
// Debian; sshd refuses to start without it.
const privsepDir = "/run/sshd"

// Timeouts for waiting on sshd. They bound a hung sshd; they are not
// expectations on how fast it is.
const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
	bindAttempts = 5
)

// Options configure the sshd that Start runs. The zero value starts a server
// that nobody can log in to: set TrustedUserCAKeys or AuthorizedKeys.
//
// Logins: the tests of this module run as root and log in as root
// (PermitRootLogin prohibit-password). To log in as another existing user,
// name it in AuthorizedPrincipals or AuthorizedKeys and make sure sshd will
// accept it: it needs a valid shell and an account that is not locked (with
// UsePAM no, sshd refuses a "!" password field: `usermod -p '*' USER`).
// Start makes the configuration directory world-readable so that sshd,
// which reads principals and authorized keys files as the user, can do so.
type Options struct {
	// TrustedUserCAKeys are the user CAs whose certificates sshd accepts.
	TrustedUserCAKeys []ssh.PublicKey
	// RevokedKeysFile, if set, becomes RevokedKeys. sshd reads it on every
	// authentication, so a test may rewrite it while the server runs.
	RevokedKeysFile string
	// AuthorizedPrincipals maps a login to the certificate principals that
	// may use it (AuthorizedPrincipalsFile). Nil leaves sshd's default: a
	// certificate is accepted for a login listed among its principals.
	AuthorizedPrincipals map[string][]string
	// HostKey is the host's private key (a crypto.Signer that
	// ssh.MarshalPrivateKey accepts, e.g. ed25519.PrivateKey: sshd needs the
	// key file, which an ssh.Signer cannot give). Nil: a fresh ed25519 key.
	HostKey crypto.Signer
	// HostCertificate, optional, is a host certificate for HostKey.
	HostCertificate *ssh.Certificate
	// AuthorizedKeys maps a login to plain keys accepted for it. Only these
	// files are read: the machine's ~/.ssh/authorized_keys never is.
	AuthorizedKeys map[string][]ssh.PublicKey
	// AllowTcpForwarding permits local and remote forwarding (for jump-host
	// setups); off by default.
	AllowTcpForwarding bool
	// Extra lines are appended to sshd_config. sshd keeps the first value
	// of most keywords, so Extra cannot override the ones Start writes;
	// Match blocks work.
	Extra []string
	// SSHD is the sshd binary; empty means DefaultSSHD.
	SSHD string
}

// Server is a running sshd.
type Server struct {
	// Addr is "127.0.0.1:Port".
	Addr string
	Port int
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// Dir holds sshd_config, the keys, principals and the log.
	Dir string
	// PID is sshd's process ID.
	PID int
	// LogFile receives sshd's log (LogLevel VERBOSE, via -e).
	LogFile string

	done chan struct{} // closed when the sshd process has been reaped
}

// Start runs sshd with opts and returns once it accepts SSH connections with
// its own host key. The server is stopped (by PID, with its per-connection
// children) and its directory removed in t.Cleanup. Start fails the test if
// sshd cannot be started.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	sshd := opts.SSHD
	if sshd == "" {
		sshd = DefaultSSHD
	}
	if _, err := os.Stat(sshd); err != nil {
		t.Fatalf("sshdtest: %s is needed (Debian package openssh-server): %v", sshd, err)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll(privsepDir, 0o755); err != nil {
			t.Fatalf("sshdtest: create privilege separation directory: %v", err)
		}
	}

	hostKey := opts.HostKey
	if hostKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatalf("sshdtest: generate host key: %v", err)
		}
		hostKey = priv
	}
	hostPub, err := ssh.NewPublicKey(hostKey.Public())
	if err != nil {
		t.Fatalf("sshdtest: host key: %v", err)
	}
	if c := opts.HostCertificate; c != nil && (c.Key == nil || !bytes.Equal(c.Key.Marshal(), hostPub.Marshal())) {
		t.Fatalf("sshdtest: HostCertificate is not for HostKey")
	}

	dir, err := os.MkdirTemp("", "sshdtest-")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // runs after the stop below (LIFO)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	if err := writeFiles(dir, hostKey, opts); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	s := &Server{Dir: dir, HostKey: hostPub, LogFile: filepath.Join(dir, "sshd.log")}
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("sshdtest: pick a port: %v", err)
		}
		err = s.start(t, sshd, port, opts)
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		if !errors.Is(err, errPortTaken) || attempt == bindAttempts {
			t.Fatalf("sshdtest: %v\nsshd log:\n%s", err, s.Logs())
		}
		t.Logf("sshdtest: port %d was taken, retrying: %v", port, err)
	}
}

var errPortTaken = errors.New("sshdtest: port taken")

// start runs sshd on port and waits until it is ready. On failure the
// process has been stopped and reaped.
func (s *Server) start(t testing.TB, sshd string, port int, opts Options) error {
	t.Helper()
	s.Port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(s.config(opts)), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(s.LogFile)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor

	cmd := exec.Command(sshd, "-D", "-e", "-f", cfg)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", sshd, err)
	}
	s.PID = cmd.Process.Pid
	done := make(chan struct{})
	s.done = done
	go func() {
		cmd.Wait() // the exit status is in the log; stop only needs the reaping
		close(done)
	}()

	if err := s.waitReady(); err != nil {
		s.stop()
		if strings.Contains(s.Logs(), "Address already in use") {
			return fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return err
	}
	return nil
}

// waitReady polls until a TCP connection to Addr gets an SSH banner and a
// host key that is this server's own (another server may hold the port).
func (s *Server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("sshd (pid %d) exited before it was ready", s.PID)
		default:
		}
		ok, err := s.probe(ctx)
		if ok {
			return nil
		}
		last = err
		select {
		case <-s.done:
			return fmt.Errorf("sshd (pid %d) exited before it was ready", s.PID)
		case <-ctx.Done():
			return fmt.Errorf("sshd (pid %d) not ready on %s after %v: %v", s.PID, s.Addr, readyTimeout, last)
		case <-tick.C:
		}
	}
}

var errProbeDone = errors.New("sshdtest: probe done")

// probe connects, reads the banner through an SSH handshake and reports
// whether the server presented this server's host key (plain or
// certified). It never authenticates.
func (s *Server) probe(ctx context.Context) (bool, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	matched := false
	cfg := &ssh.ClientConfig{
		User: "sshdtest-probe",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if c, ok := key.(*ssh.Certificate); ok {
				key = c.Key
			}
			matched = bytes.Equal(key.Marshal(), s.HostKey.Marshal())
			return errProbeDone
		},
	}
	_, _, _, err = ssh.NewClientConn(conn, s.Addr, cfg)
	if matched {
		return true, nil
	}
	if errors.Is(err, errProbeDone) {
		return false, fmt.Errorf("%s presented another host key", s.Addr)
	}
	return false, err
}

// stop terminates sshd and its per-connection processes by PID and reaps
// sshd. The connection processes go first, so that sshd itself reaps them
// rather than leaving them to init. It is idempotent.
func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	for _, pid := range descendants(s.PID) {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(stopTimeout)
	for len(childPIDs(s.PID, true)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling /proc: there is nothing to wait on
	}
	syscall.Kill(s.PID, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		syscall.Kill(s.PID, syscall.SIGKILL)
		<-s.done
	}
}

// Logs returns what sshd has logged so far.
func (s *Server) Logs() string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(sshdtest: no log: %v)", err)
	}
	return string(b)
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process
// may take it before sshd binds it; Start then retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// descendants lists the processes below pid, children before their own
// children, from /proc.
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 && len(out) < 10000 {
		kids := childPIDs(queue[0], false)
		queue = append(queue[1:], kids...)
		out = append(out, kids...)
	}
	return out
}

// childPIDs lists the processes whose parent is pid, from /proc; zombies
// (exited, not yet reaped) only when withZombies is set.
func childPIDs(pid int, withZombies bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := strconv.Itoa(pid)
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name (field 2) is parenthesised and may hold spaces;
		// state and parent PID are the two fields after its closing
		// parenthesis.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) >= 2 && fields[1] == parent && (withZombies || fields[0] != "Z") {
			out = append(out, child)
		}
	}
	return out
}
