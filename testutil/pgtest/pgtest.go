package pgtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BinDir holds the PostgreSQL server binaries.
var BinDir = "/usr/lib/postgresql/15/bin"

// PsqlPath is the psql client.
var PsqlPath = "/usr/bin/psql"

// Users created in every server. Each logs in with the method in its name.
const (
	ScramUser     = "scram_user"
	ScramPassword = "scram-secret-pw"
	MD5User       = "md5_user"
	MD5Password   = "md5-secret-pw"
	TrustUser     = "trust_user"
	Database      = "app"
)

// Options configure a server.
type Options struct {
	// TLS generates a self-signed server certificate and turns ssl on.
	TLS bool
	// Settings are extra postgresql.conf lines ("name = value").
	Settings []string
}

// Server is a running PostgreSQL.
type Server struct {
	Dir      string // temp dir holding data, socket and certificates
	DataDir  string
	Port     int
	Addr     string // 127.0.0.1:port
	CAFile   string // the self-signed certificate (TLS only)
	pid      int
	uid, gid int
}

// Start runs initdb and the server; it is stopped in t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(t, opts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s
}

func start(t testing.TB, opts Options) (*Server, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the postgres OS user is needed: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{Dir: dir, DataDir: filepath.Join(dir, "data"), uid: uid, gid: gid}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	pwfile := filepath.Join(dir, "pw")
	if err := s.writeFile(pwfile, "postgres\n"); err != nil {
		return nil, err
	}
	if out, err := s.run(BinDir+"/initdb", "-D", s.DataDir, "-U", "postgres", "--pwfile", pwfile,
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.Port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", port),
		fmt.Sprintf("unix_socket_directories = '%s'", dir),
		"fsync = off", "synchronous_commit = off", "full_page_writes = off",
		"shared_buffers = 16MB", "max_connections = 50", "password_encryption = 'scram-sha-256'",
	}
	if opts.TLS {
		if err := s.makeCert(); err != nil {
			return nil, err
		}
		conf = append(conf, "ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'")
	}
	conf = append(conf, opts.Settings...)
	if err := s.appendFile(filepath.Join(s.DataDir, "postgresql.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		return nil, err
	}
	hba := strings.Join([]string{
		"local all all trust",
		"host all " + ScramUser + " 127.0.0.1/32 scram-sha-256",
		"host all " + MD5User + " 127.0.0.1/32 md5",
		"host all all 127.0.0.1/32 trust",
	}, "\n") + "\n"
	if err := s.writeFile(filepath.Join(s.DataDir, "pg_hba.conf"), hba); err != nil {
		return nil, err
	}
	if err := s.launch(); err != nil {
		return nil, err
	}
	t.Cleanup(s.stop)
	setup := fmt.Sprintf(`
SET password_encryption = 'scram-sha-256';
CREATE ROLE %s LOGIN PASSWORD '%s';
SET password_encryption = 'md5';
CREATE ROLE %s LOGIN PASSWORD '%s';
CREATE ROLE %s LOGIN;
CREATE DATABASE %s;
GRANT ALL ON DATABASE %s TO %s, %s, %s;
ALTER DATABASE %s OWNER TO %s;
`, ScramUser, ScramPassword, MD5User, MD5Password, TrustUser, Database, Database, ScramUser, MD5User, TrustUser, Database, ScramUser)
	if _, err := s.SuperSQL("postgres", setup); err != nil {
		return nil, err
	}
	if _, err := s.SuperSQL(Database, "GRANT ALL ON SCHEMA public TO "+MD5User+", "+TrustUser+"; GRANT "+ScramUser+" TO "+MD5User+", "+TrustUser+";"); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) launch() error {
	logf := filepath.Join(s.Dir, "server.log")
	cmd := exec.Command(BinDir+"/postgres", "-D", s.DataDir)
	f, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.pid = cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			log, _ := os.ReadFile(logf)
			return fmt.Errorf("postgres exited: %v: %s", err, log)
		default:
		}
		if _, err := s.SuperSQL("postgres", "SELECT 1"); err == nil {
			// Reap the process in the background; stop waits via signals.
			go func() { <-done }()
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf)
			_ = syscall.Kill(s.pid, syscall.SIGKILL)
			return fmt.Errorf("postgres did not start: %s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.pid == 0 {
		return
	}
	_, _ = s.run(BinDir+"/pg_ctl", "stop", "-D", s.DataDir, "-m", "fast", "-w", "-t", "10")
	if syscall.Kill(s.pid, 0) == nil {
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
	}
	s.pid = 0
}

// PID is the postmaster's process id.
func (s *Server) PID() int { return s.pid }

// SuperSQL runs sql as the postgres superuser over the Unix socket and
// returns psql's unaligned, tuples-only output.
func (s *Server) SuperSQL(db, sql string) (string, error) {
	out, err := s.runIn(sql, PsqlPath, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", db, "-f", "-")
	if err != nil {
		return out, fmt.Errorf("psql: %w: %s", err, out)
	}
	return out, nil
}

// MustSQL is SuperSQL on the test database that fails the test on error.
func (s *Server) MustSQL(t testing.TB, sql string) string {
	t.Helper()
	out, err := s.SuperSQL(Database, sql)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return out
}

// DSN returns a key=value connection string for user on TCP.
func (s *Server) DSN(user, password string) string {
	d := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", s.Port, user, Database)
	if password != "" {
		d += " password=" + password
	}
	return d
}

// Result is the output of a psql run.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Psql runs the real psql against addr (host:port) as user with the given
// extra arguments (e.g. "-c", "SELECT 1"), stdin and no password prompt.
func Psql(ctx context.Context, addr, user, db, stdin string, args ...string) (Result, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Result{}, err
	}
	all := append([]string{"-X", "-w", "-h", host, "-p", port, "-U", user, "-d", db}, args...)
	cmd := exec.CommandContext(ctx, PsqlPath, all...)
	cmd.Env = append(os.Environ(), "PGSSLMODE=prefer", "PGCONNECT_TIMEOUT=10", "PGPASSWORD=", "PSQLRC=/dev/null")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.ExitCode = ee.ExitCode()
		return r, nil
	}
	return r, err
}

func (s *Server) run(name string, args ...string) (string, error) {
	return s.runIn("", name, args...)
}

func (s *Server) runIn(stdin, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "PGPASSWORD=", "PSQLRC=/dev/null", "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *Server) writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Chown(path, s.uid, s.gid)
}

func (s *Server) appendFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(content)
	return err
}

// makeCert writes a self-signed certificate for 127.0.0.1/localhost.
func (s *Server) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	crt := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	if err := s.writeFile(filepath.Join(s.DataDir, "server.crt"), crt); err != nil {
		return err
	}
	if err := s.writeFile(filepath.Join(s.DataDir, "server.key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))); err != nil {
		return err
	}
	s.CAFile = filepath.Join(s.Dir, "ca.crt")
	return os.WriteFile(s.CAFile, []byte(crt), 0o644)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
