package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newPub(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTrustedCAKeys: the current CA key and the listed older ones are
// trusted, per kind; anything else is not.
func TestTrustedCAKeys(t *testing.T) {
	a, _ := newAuthority(t, time.Now())
	oldUser, oldHost, stranger := newPub(t), newPub(t), newPub(t)
	a.TrustedUser, a.TrustedHost = []ssh.PublicKey{oldUser}, []ssh.PublicKey{oldHost}
	for _, tc := range []struct {
		name       string
		key        ssh.PublicKey
		user, host bool
	}{
		{"current user CA", a.User.PublicKey(), true, false},
		{"current host CA", a.Host.PublicKey(), false, true},
		{"previous user CA", oldUser, true, false},
		{"previous host CA", oldHost, false, true},
		{"stranger", stranger, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.IsUserCA(tc.key); got != tc.user {
				t.Errorf("IsUserCA = %v", got)
			}
			if got := a.IsHostCA(tc.key); got != tc.host {
				t.Errorf("IsHostCA = %v", got)
			}
		})
	}
	if ks := a.UserCAKeys(); len(ks) != 2 || string(ks[0].Marshal()) != string(a.User.PublicKey().Marshal()) {
		t.Fatalf("UserCAKeys: %d keys, current first expected", len(ks))
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(oldUser)))
	if ks, err := ParseTrustedKeys([]string{line + " previous user CA"}); err != nil || len(ks) != 1 {
		t.Fatalf("ParseTrustedKeys: %v", err)
	}
	if _, err := ParseTrustedKeys([]string{"ssh-ed25519 garbage"}); err == nil {
		t.Fatal("a malformed key was accepted")
	}
}
