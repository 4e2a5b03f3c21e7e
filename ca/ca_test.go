package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/storage/boltstore"
)

func newAuthority(t *testing.T, now time.Time) (*Authority, *boltstore.Store) {
	t.Helper()
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	u, err := LoadOrCreateKey(ctx, filepath.Join(dir, "user_ca"), st, "ca/user")
	if err != nil {
		t.Fatal(err)
	}
	h, err := LoadOrCreateKey(ctx, filepath.Join(dir, "host_ca"), st, "ca/host")
	if err != nil {
		t.Fatal(err)
	}
	return &Authority{User: u, Host: h, Store: st, DefaultTTL: 10 * time.Minute, MaxTTL: time.Hour, Clock: func() time.Time { return now }}, st
}

func sshPub(t *testing.T, k any) ssh.PublicKey {
	t.Helper()
	p, err := ssh.NewPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeysCreatedOnceWith0600(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	file := filepath.Join(dir, "sub", "user_ca")
	a, err := LoadOrCreateKey(ctx, file, nil, "k")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v", fi.Mode(), err)
	}
	b, err := LoadOrCreateKey(ctx, file, nil, "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(a.PublicKey().Marshal()) != string(b.PublicKey().Marshal()) {
		t.Fatal("second start generated a new key")
	}
	if a.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("CA key type %s", a.PublicKey().Type())
	}
}

func TestSignUserReadableBySSHKeygen(t *testing.T) {
	now := time.Now()
	a, st := newAuthority(t, now)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	iss, err := a.SignUser(context.Background(), UserRequest{PublicKey: sshPub(t, pub), Username: "alice@example.com", Principals: []string{"ubuntu", "deploy"}, TTL: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Cert
	if c.KeyId != "alice@example.com/"+strconv.FormatUint(iss.Serial, 10) || c.CertType != ssh.UserCert {
		t.Fatalf("key id %q type %d", c.KeyId, c.CertType)
	}
	if got := time.Unix(int64(c.ValidAfter), 0); now.Sub(got) < 59*time.Second || now.Sub(got) > 61*time.Second {
		t.Fatalf("valid after %v not backdated one minute from %v", got, now)
	}
	if _, ok := c.Permissions.Extensions[ExtPortForwarding]; ok {
		t.Fatal("port forwarding granted without policy")
	}
	rec, err := st.Cert(context.Background(), iss.Serial)
	if err != nil || rec.User != "alice@example.com" {
		t.Fatalf("cert record %v %v", rec, err)
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	f := filepath.Join(t.TempDir(), "id-cert.pub")
	if err := os.WriteFile(f, ssh.MarshalAuthorizedKey(c), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-L", "-f", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	for _, want := range []string{"user certificate", `Key ID: "alice@example.com/`, "ubuntu", "deploy", "permit-pty"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ssh-keygen -L output lacks %q:\n%s", want, out)
		}
	}
}

func TestTTLClamp(t *testing.T) {
	a, _ := newAuthority(t, time.Now())
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		ttl     time.Duration
		roleMax time.Duration
		want    time.Duration
		clamped bool
	}{
		{"default", 0, 0, 10 * time.Minute, false},
		{"asked", 20 * time.Minute, 0, 20 * time.Minute, false},
		{"over max", 5 * time.Hour, 0, time.Hour, true},
		{"role cap", 30 * time.Minute, 15 * time.Minute, 15 * time.Minute, true},
		{"default above role cap", 0, 5 * time.Minute, 5 * time.Minute, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss, err := a.SignUser(context.Background(), UserRequest{PublicKey: sshPub(t, pub), Username: "u", Principals: []string{"x"}, TTL: tc.ttl, RoleMaxTTL: tc.roleMax})
			if err != nil {
				t.Fatal(err)
			}
			if iss.TTL != tc.want || iss.Clamped != tc.clamped {
				t.Fatalf("ttl %v clamped %v, want %v %v", iss.TTL, iss.Clamped, tc.want, tc.clamped)
			}
			if life := time.Duration(iss.Cert.ValidBefore-iss.Cert.ValidAfter)*time.Second - Backdate; life > tc.want {
				t.Fatalf("certificate lives %v, more than %v", life, tc.want)
			}
		})
	}
}

func TestKeyTypes(t *testing.T) {
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	// A DSA key and FIDO keys as OpenSSH writes them.
	const dsaLine = "ssh-dss AAAAB3NzaC1kc3MAAACBAOq8Ux6xGPV5b7DE0lJrLjQ5S7Wm2i+Sm0pJ8PlJ0yFbRPWjc8P5E3HyGpEtuEk8Gn3Wj0OxzlFNM3hdgwNhHffIk+lVXfGfB7RfUpHOO3MO1mBpP7C8e1c1X/ytXBd2dHlcvT0+0jq1h1RUGoGjO2Vjp7IfJxsnQ1B7ALhi0yAbAAAAFQDMULPhC3xIWM/2kRf2cXMu7KxH+wAAAIBrxNF4LL1Dt34lSQWSbBH8iVS9OGy8cQmrbbUlvdpRcrxM0KJGJvMgR7Th2AZsdIbOB+2n4c2WYKe9EC/XFm5Vvsz6d8uNH2UXDq7kzw0oAPAFhEMwRv6yBkQ/BPgc8gA7BjZLvjgRU+IfyyEzxf8IK+4pP6U3vmi6umuE9yNA1QAAAIBHrrFbV1bkYlLtE1MlvyqY4mk47o4fSB9yGn5rEn4SrfYLMdmYhMA2Wqg1dTUAH1xfjXq3QXbIE6/CcmMSNUsyjUFAT0HPfpzA7DYsh+v8cRmMT3tbMjTrDd9tBSxMt8uh1nzEsA2eg6gfiPXfyqe2Wlb8H2xXbO6RjDeOwHKKZg=="
	const skEd = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIDSbNLyqfo5G7V3u2vxAUsLXmsPm4Ml7HrFjTdVLGKsRAAAABHNzaDo="
	tests := []struct {
		name string
		key  func(t *testing.T) ssh.PublicKey
		ok   bool
	}{
		{"ed25519", func(t *testing.T) ssh.PublicKey { return sshPub(t, ed) }, true},
		{"ecdsa p256", func(t *testing.T) ssh.PublicKey { return sshPub(t, &p256.PublicKey) }, true},
		{"ecdsa p384", func(t *testing.T) ssh.PublicKey { return sshPub(t, &p384.PublicKey) }, true},
		{"rsa 2048", func(t *testing.T) ssh.PublicKey { return sshPub(t, &rsa2048.PublicKey) }, true},
		{"rsa 1024", func(t *testing.T) ssh.PublicKey { return sshPub(t, &rsa1024.PublicKey) }, false},
		{"dsa", func(t *testing.T) ssh.PublicKey { return parseLine(t, dsaLine) }, false},
		{"sk-ed25519", func(t *testing.T) ssh.PublicKey { return parseLine(t, skEd) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.key(t)
			if k == nil {
				if tc.ok {
					t.Fatal("an accepted key type could not be parsed")
				}
				return // refused at parsing already (x/crypto no longer reads ssh-dss)
			}
			err := CheckPublicKey(k)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckPublicKey = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrKeyRejected) {
				t.Fatalf("error %v does not wrap ErrKeyRejected", err)
			}
		})
	}
}

func parseLine(t *testing.T, line string) ssh.PublicKey {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Logf("parse %q: %v", line[:20], err)
		return nil
	}
	return k
}

func TestEmptyPrincipalsRefused(t *testing.T) {
	a, _ := newAuthority(t, time.Now())
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := a.SignUser(context.Background(), UserRequest{PublicKey: sshPub(t, pub), Username: "u"}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("empty principals: %v", err)
	}
}
