package login

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }

// FuzzCheckIssued feeds arbitrary server answers to the certificate check:
// it must never panic and never accept anything but a user certificate for
// our own key.
func FuzzCheckIssued(f *testing.F) {
	f.Add("ssh-ed25519-cert-v01@openssh.com AAAA", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvOt3AkTmCDLmnshDMVwEpWwDKbdMa4zKNz0cpqmpeq")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, certificate, hostCA string) {
		pubKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Public()
		pub, err := ssh.NewPublicKey(pubKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, _, err := checkIssued(CertResponse{Certificate: certificate, HostCA: hostCA}, pub, time.Unix(1_700_000_000, 0))
		if err != nil {
			if cert != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if cert.CertType != ssh.UserCert || !bytes.Equal(cert.Key.Marshal(), pub.Marshal()) {
			t.Fatalf("accepted %q", certificate)
		}
	})
}
