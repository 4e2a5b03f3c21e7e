package harness

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/testutil/sshdtest"
)

// CAKeys are user and host CA keys made before the server starts and
// handed to it through its config, so that an sshd can trust them first.
type CAKeys struct {
	User, Host         ssh.Signer
	UserFile, HostFile string
}

// NewCAKeys writes a fresh ed25519 user CA and host CA key (0600).
func NewCAKeys(t testing.TB) CAKeys {
	t.Helper()
	dir := t.TempDir()
	var k CAKeys
	for _, which := range []string{"user", "host"} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		blk, err := ssh.MarshalPrivateKey(priv, which+" ca")
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, which+"_ca")
		if err := os.WriteFile(f, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if which == "user" {
			k.User, k.UserFile = s, f
		} else {
			k.Host, k.HostFile = s, f
		}
	}
	return k
}

// CAConfig is the `ca:` block of a server config using these keys, with
// the given user certificate TTLs (empty: the server defaults).
func (k CAKeys) CAConfig(userTTL, maxTTL string) string {
	s := "ca: {user_key_file: " + k.UserFile + ", host_key_file: " + k.HostFile
	if userTTL != "" {
		s += ", user_cert_ttl: " + userTTL
	}
	if maxTTL != "" {
		s += ", max_user_cert_ttl: " + maxTTL
	}
	return s + "}\n"
}

// HostCert returns a fresh ed25519 host key and a certificate for it from
// the host CA naming principals, valid for an hour from a minute ago.
func (k CAKeys) HostCert(t testing.TB, principals ...string) (ed25519.PrivateKey, *ssh.Certificate) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: signer.PublicKey(), CertType: ssh.HostCert, KeyId: "harness-host", ValidPrincipals: principals,
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(3 * time.Hour).Unix())}
	if err := cert.SignCert(rand.Reader, k.Host); err != nil {
		t.Fatal(err)
	}
	return priv, cert
}

// StartCertSSHD runs a real sshd that accepts certificates of the user CA
// for root (principal root) and presents a host certificate from the host
// CA for names plus 127.0.0.1. It allows TCP forwarding, so it serves both
// as a target and as an OpenSSH jump host. extra lines go to sshd_config.
func (k CAKeys) StartCertSSHD(t testing.TB, names []string, extra ...string) *sshdtest.Server {
	t.Helper()
	priv, cert := k.HostCert(t, append(append([]string(nil), names...), "127.0.0.1")...)
	return sshdtest.Start(t, sshdtest.Options{
		TrustedUserCAKeys:    []ssh.PublicKey{k.User.PublicKey()},
		AuthorizedPrincipals: map[string][]string{"root": {"root"}},
		HostKey:              priv,
		HostCertificate:      cert,
		AllowTcpForwarding:   true,
		Extra:                extra,
	})
}
