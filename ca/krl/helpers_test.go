package krl

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// seededSigner is a deterministic ed25519 signer, so golden bytes are stable.
func seededSigner(t testing.TB, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signCert issues a user certificate for key, signed by ca.
func signCert(t testing.TB, ca ssh.Signer, key ssh.PublicKey, serial uint64, keyID string) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{"root"},
		ValidAfter:      0,
		ValidBefore:     ssh.CertTimeInfinity,
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sshKeygen(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("these tests need OpenSSH's ssh-keygen (Debian package openssh-client): %v", err)
	}
	return p
}

// keygenRevoked asks the real `ssh-keygen -Q -f krl cert` whether cert is
// revoked: exit 1 with "REVOKED" means revoked, exit 0 means not.
func keygenRevoked(t testing.TB, krlPath, certPath string) bool {
	t.Helper()
	cmd := exec.Command(sshKeygen(t), "-Q", "-f", krlPath, certPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		if !strings.Contains(stdout.String(), ": ok") {
			t.Fatalf("ssh-keygen -Q exited 0 without \"ok\": stdout %q stderr %q", stdout.String(), stderr.String())
		}
		return false
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 1 && strings.Contains(stdout.String(), "REVOKED"):
		return true
	default:
		t.Fatalf("ssh-keygen -Q -f %s %s: %v: stdout %q stderr %q", krlPath, certPath, err, stdout.String(), stderr.String())
		return false
	}
}

// describe renders a KRL canonically, keys as wire blobs, for comparisons.
func describe(k *KRL) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version=%d date=%d(%v) comment=%q\n", k.Version, k.GeneratedAt.Unix(), k.GeneratedAt.IsZero(), k.Comment)
	for i, s := range k.Certificates {
		ca := "*"
		if s.CA != nil {
			ca = fmt.Sprintf("%x", s.CA.Marshal())
		}
		fmt.Fprintf(&b, "cert[%d] ca=%s serials=%v ranges=%v ids=%q\n", i, ca, s.Serials, s.SerialRanges, s.KeyIDs)
	}
	for _, key := range k.Keys {
		fmt.Fprintf(&b, "key %x\n", key.Marshal())
	}
	fmt.Fprintf(&b, "sha1 %x\nsha256 %x\n", k.SHA1Fingerprints, k.SHA256Fingerprints)
	return b.String()
}
