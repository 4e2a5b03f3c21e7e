package test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"github.com/jumpgate/jumpgate/devidp"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/sshdtest"
)

func TestMain(m *testing.M) {
	// Invoked as $BROWSER by `jumpgate login`: act as the user's browser.
	if user := os.Getenv("JG_TEST_BROWSER_USER"); user != "" && len(os.Args) > 1 {
		os.Exit(fakeBrowser(user, os.Getenv("JG_TEST_IDP_CA"), os.Args[len(os.Args)-1]))
	}
	code := m.Run()
	harness.Cleanup()
	os.Exit(code)
}

// caKeys are CA keys made by the test and handed to the server through its
// config, so a target sshd can trust them before the server starts.
type caKeys struct {
	user, host         ssh.Signer
	userFile, hostFile string
}

func newCAKeys(t *testing.T) caKeys {
	t.Helper()
	dir := t.TempDir()
	var k caKeys
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
		s, _ := ssh.NewSignerFromKey(priv)
		if which == "user" {
			k.user, k.userFile = s, f
		} else {
			k.host, k.hostFile = s, f
		}
	}
	return k
}

func (k caKeys) config() string {
	return "ca: {user_key_file: " + k.userFile + ", host_key_file: " + k.hostFile + "}\n"
}

// startTarget runs a real sshd that trusts the jumpgate user CA and
// presents a host certificate from the jumpgate host CA for names.
func startTarget(t *testing.T, k caKeys, names []string, extra ...string) *sshdtest.Server {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	cert := &ssh.Certificate{Key: hostSigner.PublicKey(), CertType: ssh.HostCert, KeyId: "target", ValidPrincipals: append(names, "127.0.0.1"),
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	if err := cert.SignCert(rand.Reader, k.host); err != nil {
		t.Fatal(err)
	}
	return sshdtest.Start(t, sshdtest.Options{
		TrustedUserCAKeys:    []ssh.PublicKey{k.user.PublicKey()},
		AuthorizedPrincipals: map[string][]string{"root": {"root"}},
		HostKey:              hostPriv,
		HostCertificate:      cert,
		AllowTcpForwarding:   true,
		Extra:                extra,
	})
}

func boolp(b bool) *bool { return &b }

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// fakeBrowser does what a person's browser does with the login URL: the
// IdP's real login form, then the redirect back to the CLI's loopback
// listener.
func fakeBrowser(user, caFile, authURL string) int {
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(caFile); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx := context.Background()
	redirect, err := devidp.BrowserLogin(ctx, hc, authURL, user, devidp.DemoPassword(user))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake browser:", err)
		return 1
	}
	resp, err := hc.Get(redirect)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake browser:", err)
		return 1
	}
	resp.Body.Close()
	return 0
}
