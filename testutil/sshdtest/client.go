package sshdtest

import (
	"crypto"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// SSHArgs returns options for the OpenSSH client that reach this server and
// nothing else: no ~/.ssh/config (-F /dev/null), only the given identity
// and certificate, the given known_hosts file with StrictHostKeyChecking=yes,
// no prompts (BatchMode), no agent or X11 forwarding, no connection sharing,
// and the server's port. Append the destination ("root@127.0.0.1") and the
// command. identityFile and certFile may be empty (then no IdentityFile or
// CertificateFile is given, and the agent stays usable). ssh keeps the first
// value it sees for an option, so put overriding -o options before these.
func (s *Server) SSHArgs(identityFile, certFile, knownHostsFile string) []string {
	args := []string{
		"-F", "/dev/null",
		"-p", strconv.Itoa(s.Port),
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + knownHostsFile,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "UpdateHostKeys=no",
		"-o", "CheckHostIP=no",
		"-o", "PreferredAuthentications=publickey",
		"-o", "PasswordAuthentication=no",
		"-o", "KbdInteractiveAuthentication=no",
		"-o", "ForwardAgent=no",
		"-o", "ForwardX11=no",
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
	}
	if identityFile != "" {
		args = append(args, "-o", "IdentityFile="+identityFile, "-o", "IdentityAgent=none")
	}
	if certFile != "" {
		args = append(args, "-o", "CertificateFile="+certFile)
	}
	return args
}

// HostPattern is the known_hosts host pattern for this server,
// "[127.0.0.1]:PORT".
func (s *Server) HostPattern() string {
	return "[127.0.0.1]:" + strconv.Itoa(s.Port)
}

// KnownHostsLine pins the server's host key: a known_hosts line with a
// trailing newline.
func (s *Server) KnownHostsLine() string {
	return s.HostPattern() + " " + string(ssh.MarshalAuthorizedKey(s.HostKey))
}

// CertAuthorityLine is a known_hosts line trusting hostCA to certify this
// server's host key ("@cert-authority [127.0.0.1]:PORT KEY"), with a
// trailing newline. The host certificate must name 127.0.0.1 as a
// principal.
func (s *Server) CertAuthorityLine(hostCA ssh.PublicKey) string {
	return "@cert-authority " + s.HostPattern() + " " + string(ssh.MarshalAuthorizedKey(hostCA))
}

// WriteIdentity writes key (OpenSSH private key format, mode 0600) to
// dir/name and, when cert is not nil, the certificate to dir/name-cert.pub,
// ready for SSHArgs. certFile is empty without a certificate.
func WriteIdentity(dir, name string, key crypto.Signer, cert *ssh.Certificate) (identityFile, certFile string, err error) {
	if strings.ContainsAny(name, "/\x00") || name == "" {
		return "", "", fmt.Errorf("sshdtest: bad identity name %q", name)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return "", "", fmt.Errorf("sshdtest: encode identity: %w", err)
	}
	identityFile = filepath.Join(dir, name)
	if err := os.WriteFile(identityFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", "", fmt.Errorf("sshdtest: %w", err)
	}
	if cert != nil {
		certFile = identityFile + "-cert.pub"
		if err := os.WriteFile(certFile, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			return "", "", fmt.Errorf("sshdtest: %w", err)
		}
	}
	return identityFile, certFile, nil
}
