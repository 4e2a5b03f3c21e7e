package recorder

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func testKey(t *testing.T, seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

const sampleHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestSignVerify(t *testing.T) {
	pub, priv := testKey(t, 1)
	otherPub, _ := testKey(t, 2)
	sig, err := Sign(priv, sampleHash, "sess-42")
	must(t, err)
	msg, err := SignedMessage(sampleHash, "sess-42")
	must(t, err)
	if want := "jumpgate-recording-v1\n" + sampleHash + "\nsess-42"; string(msg) != want {
		t.Errorf("signed message %q, want %q", msg, want)
	}
	otherHash := strings.Replace(sampleHash, "9f", "9e", 1)
	flipped := []byte(sig)
	flipped[3] ^= 1
	tests := []struct {
		name      string
		pub       ed25519.PublicKey
		hash, id  string
		sig       string
		wantErr   bool
		wantIsBad bool
	}{
		{"valid", pub, sampleHash, "sess-42", sig, false, false},
		{"other hash", pub, otherHash, "sess-42", sig, true, true},
		{"other session", pub, sampleHash, "sess-43", sig, true, true},
		{"other key", otherPub, sampleHash, "sess-42", sig, true, true},
		{"flipped bit", pub, sampleHash, "sess-42", string(flipped), true, true},
		{"not base64", pub, sampleHash, "sess-42", "!!", true, true},
		{"short signature", pub, sampleHash, "sess-42", base64.StdEncoding.EncodeToString([]byte("short")), true, true},
		{"upper-case hash", pub, strings.ToUpper(sampleHash), "sess-42", sig, true, false},
		{"short hash", pub, sampleHash[:63], "sess-42", sig, true, false},
		{"newline in session id", pub, sampleHash, "sess\n42", sig, true, false},
		{"empty session id", pub, sampleHash, "", sig, true, false},
		{"bad public key", pub[:10], sampleHash, "sess-42", sig, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.pub, tc.hash, tc.id, tc.sig)
			if (err != nil) != tc.wantErr || errors.Is(err, ErrBadSignature) != tc.wantIsBad {
				t.Errorf("Verify = %v; wantErr %v, ErrBadSignature %v", err, tc.wantErr, tc.wantIsBad)
			}
		})
	}
	if _, err := Sign(priv[:5], sampleHash, "x"); err == nil {
		t.Error("Sign with a short key succeeded")
	}
	if _, err := Sign(priv, "abc", "x"); err == nil {
		t.Error("Sign of a non-hash succeeded")
	}
}

// TestVerifyWithOpenSSL checks the documented offline procedure: an
// auditor with openssl and the public key verifies a signature of a real
// recording without jumpgate.
func TestVerifyWithOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	pub, priv := testKey(t, 7)
	clock := newFakeClock()
	w, path := newTestWriter(t, clock, Options{})
	must(t, w.Output([]byte("hello auditor\r\n")))
	sum, err := w.Close()
	must(t, err)
	sig, err := Sign(priv, sum.SHA256, "sess-7")
	must(t, err)

	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(pub)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600))
	raw, err := base64.StdEncoding.DecodeString(sig)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "sig"), raw, 0o600))
	// The message is rebuilt from the file with sha256sum, as documented.
	script := `printf 'jumpgate-recording-v1\n%s\n%s' "$(sha256sum "$1" | cut -d' ' -f1)" "$2" > msg && ` +
		`"$3" pkeyutl -verify -pubin -inkey key.pem -rawin -in msg -sigfile sig`
	run := func(id string) (string, error) {
		cmd := exec.Command("sh", "-c", script, "sh", path, id, openssl)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("sess-7"); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		t.Fatalf("openssl verify failed: %v\n%s", err, out)
	}
	if out, err := run("sess-8"); err == nil {
		t.Fatalf("openssl verified a signature for the wrong session:\n%s", out)
	}
}
