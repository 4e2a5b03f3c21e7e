package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jumpgate/jumpgate/ca/krl"
	"golang.org/x/crypto/ssh"
)

func newKey(t *testing.T) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, s
}

func sign(t *testing.T, ca ssh.Signer, key ssh.PublicKey, typ uint32, serial uint64, principals ...string) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        typ,
		KeyId:           "test/" + principals[0],
		ValidPrincipals: principals,
		ValidAfter:      0,
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if typ == ssh.UserCert {
		c.Permissions.Extensions = map[string]string{"permit-pty": ""}
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// userIdentity writes a fresh key and a user certificate from ca for
// principal "root" with serial.
func userIdentity(t *testing.T, dir, name string, ca ssh.Signer, serial uint64) (idFile, certFile string) {
	t.Helper()
	priv, signer := newKey(t)
	idFile, certFile, err := WriteIdentity(dir, name, priv, sign(t, ca, signer.PublicKey(), ssh.UserCert, serial, "root"))
	if err != nil {
		t.Fatal(err)
	}
	return idFile, certFile
}

func writeFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runSSH runs the real ssh client and returns its stdout, stderr and exit
// status.
func runSSH(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	sshPath, err := exec.LookPath("ssh")
	if err != nil {
		t.Fatalf("these tests need OpenSSH's ssh (Debian package openssh-client): %v", err)
	}
	cmd := exec.CommandContext(t.Context(), sshPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exitErr):
		return stdout.String(), stderr.String(), exitErr.ExitCode()
	default:
		t.Fatalf("ssh: %v", err)
		return "", "", -1
	}
}

func echoOK(t *testing.T, s *Server, idFile, certFile, knownHosts string) (string, string, int) {
	t.Helper()
	return runSSH(t, append(s.SSHArgs(idFile, certFile, knownHosts), "root@127.0.0.1", "echo ok")...)
}

func TestCertificateLoginAndRevocation(t *testing.T) {
	dir := t.TempDir()
	_, userCA := newKey(t)
	_, otherCA := newKey(t)
	krlFile := filepath.Join(dir, "revoked.krl")
	empty, err := (&krl.KRL{}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, krlFile, string(empty))

	s := Start(t, Options{
		TrustedUserCAKeys:    []ssh.PublicKey{userCA.PublicKey()},
		AuthorizedPrincipals: map[string][]string{"root": {"root"}},
		RevokedKeysFile:      krlFile,
	})
	knownHosts := writeFile(t, filepath.Join(dir, "known_hosts"), s.KnownHostsLine())
	id42, cert42 := userIdentity(t, dir, "id42", userCA, 42)
	id43, cert43 := userIdentity(t, dir, "id43", userCA, 43)
	idOther, certOther := userIdentity(t, dir, "idother", otherCA, 42)

	login := func(t *testing.T, idFile, certFile string, wantOK bool) {
		t.Helper()
		stdout, stderr, code := echoOK(t, s, idFile, certFile, knownHosts)
		if wantOK && (code != 0 || stdout != "ok\n") {
			t.Fatalf("ssh exit %d, stdout %q, stderr %q\nsshd log:\n%s", code, stdout, stderr, s.Logs())
		}
		if !wantOK && (code != 255 || stdout != "" || !strings.Contains(stderr, "Permission denied")) {
			t.Fatalf("ssh should be refused: exit %d, stdout %q, stderr %q\nsshd log:\n%s", code, stdout, stderr, s.Logs())
		}
	}

	t.Run("certificate logs in", func(t *testing.T) { login(t, id42, cert42, true) })
	t.Run("certificate from an untrusted CA is refused", func(t *testing.T) { login(t, idOther, certOther, false) })

	// sshd reads RevokedKeys on every authentication: revoke serial 42 in
	// the running server's KRL.
	k := &krl.KRL{Version: 1, Certificates: []krl.CertSection{{CA: userCA.PublicKey(), Serials: []uint64{42}}}}
	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, krlFile, string(b))

	t.Run("revoked serial is refused", func(t *testing.T) {
		login(t, id42, cert42, false)
		if logs := s.Logs(); !strings.Contains(logs, "revoked by file "+krlFile) {
			t.Fatalf("sshd did not log a revocation:\n%s", logs)
		}
	})
	t.Run("other serial still logs in", func(t *testing.T) { login(t, id43, cert43, true) })

	t.Run("a new server started with the KRL refuses it too", func(t *testing.T) {
		s2 := Start(t, Options{
			TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()},
			RevokedKeysFile:   krlFile,
		})
		kh := writeFile(t, filepath.Join(dir, "known_hosts2"), s2.KnownHostsLine())
		if _, stderr, code := echoOK(t, s2, id42, cert42, kh); code != 255 || !strings.Contains(stderr, "Permission denied") {
			t.Fatalf("revoked cert on a fresh server: exit %d, stderr %q", code, stderr)
		}
		if stdout, stderr, code := echoOK(t, s2, id43, cert43, kh); code != 0 || stdout != "ok\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q\n%s", code, stdout, stderr, s2.Logs())
		}
	})
}

func TestPrincipalsFile(t *testing.T) {
	dir := t.TempDir()
	_, userCA := newKey(t)
	s := Start(t, Options{
		TrustedUserCAKeys:    []ssh.PublicKey{userCA.PublicKey()},
		AuthorizedPrincipals: map[string][]string{"root": {"admins"}},
	})
	kh := writeFile(t, filepath.Join(dir, "known_hosts"), s.KnownHostsLine())
	tests := []struct {
		principal string
		wantOK    bool
	}{
		{"admins", true},
		{"root", false}, // the login name itself is not enough once a principals file is set
	}
	for _, tt := range tests {
		t.Run(tt.principal, func(t *testing.T) {
			priv, signer := newKey(t)
			id, cert, err := WriteIdentity(dir, "id-"+tt.principal, priv, sign(t, userCA, signer.PublicKey(), ssh.UserCert, 1, tt.principal))
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := echoOK(t, s, id, cert, kh)
			if got := code == 0 && stdout == "ok\n"; got != tt.wantOK {
				t.Fatalf("login ok = %v, want %v (exit %d, stderr %q)", got, tt.wantOK, code, stderr)
			}
		})
	}
}

func TestHostCertificate(t *testing.T) {
	dir := t.TempDir()
	_, hostCA := newKey(t)
	_, otherHostCA := newKey(t)
	_, userCA := newKey(t)
	hostPriv, hostSigner := newKey(t)
	hostCert := sign(t, hostCA, hostSigner.PublicKey(), ssh.HostCert, 7, "127.0.0.1", "localhost")

	s := Start(t, Options{
		TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()},
		HostKey:           hostPriv,
		HostCertificate:   hostCert,
	})
	if !bytes.Equal(s.HostKey.Marshal(), hostSigner.PublicKey().Marshal()) {
		t.Fatalf("Server.HostKey is not the given host key")
	}
	id, cert := userIdentity(t, dir, "id", userCA, 1)

	t.Run("trusted host CA", func(t *testing.T) {
		kh := writeFile(t, filepath.Join(dir, "kh-ca"), s.CertAuthorityLine(hostCA.PublicKey()))
		stdout, stderr, code := echoOK(t, s, id, cert, kh)
		if code != 0 || stdout != "ok\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q\nsshd log:\n%s", code, stdout, stderr, s.Logs())
		}
	})
	t.Run("other host CA", func(t *testing.T) {
		kh := writeFile(t, filepath.Join(dir, "kh-other"), s.CertAuthorityLine(otherHostCA.PublicKey()))
		_, stderr, code := echoOK(t, s, id, cert, kh)
		if code != 255 || !strings.Contains(stderr, "Host key verification failed") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("empty known_hosts", func(t *testing.T) {
		kh := writeFile(t, filepath.Join(dir, "kh-empty"), "")
		_, stderr, code := echoOK(t, s, id, cert, kh)
		if code != 255 || !strings.Contains(stderr, "Host key verification failed") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestAuthorizedKeys(t *testing.T) {
	dir := t.TempDir()
	priv, signer := newKey(t)
	otherPriv, _ := newKey(t)
	s := Start(t, Options{AuthorizedKeys: map[string][]ssh.PublicKey{"root": {signer.PublicKey()}}})
	kh := writeFile(t, filepath.Join(dir, "known_hosts"), s.KnownHostsLine())
	for _, tt := range []struct {
		name   string
		key    ed25519.PrivateKey
		wantOK bool
	}{
		{"listed key", priv, true},
		{"other key", otherPriv, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, _, err := WriteIdentity(dir, strings.ReplaceAll(tt.name, " ", "-"), tt.key, nil)
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := echoOK(t, s, id, "", kh)
			if got := code == 0 && stdout == "ok\n"; got != tt.wantOK {
				t.Fatalf("login ok = %v, want %v (exit %d, stderr %q)", got, tt.wantOK, code, stderr)
			}
		})
	}
}

func TestCleanupStopsSSHD(t *testing.T) {
	var pid int
	var dir string
	t.Run("server", func(t *testing.T) {
		s := Start(t, Options{})
		pid, dir = s.PID, s.Dir
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("sshd pid %d not running: %v", pid, err)
		}
	})
	// The subtest's cleanups have run: sshd is reaped, so its PID is gone.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("sshd pid %d still exists after cleanup: %v", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s not removed: %v", dir, err)
	}
}
