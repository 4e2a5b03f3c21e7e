package sshdtest

import (
	"bytes"
	"crypto"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// File names inside Server.Dir.
const (
	hostKeyFile      = "ssh_host_key"
	hostCertFile     = "ssh_host_key-cert.pub"
	userCAFile       = "trusted_user_ca_keys"
	principalsDir    = "principals"
	authorizedKeyDir = "authorized_keys"
	pidFile          = "sshd.pid"
)

// writeFiles writes the host key, host certificate, user CAs, principals
// and authorized keys that the configuration refers to.
func writeFiles(dir string, hostKey crypto.Signer, opts Options) error {
	block, err := ssh.MarshalPrivateKey(hostKey, "sshdtest host key")
	if err != nil {
		return fmt.Errorf("encode host key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, hostKeyFile), pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	if opts.HostCertificate != nil {
		if err := os.WriteFile(filepath.Join(dir, hostCertFile), ssh.MarshalAuthorizedKey(opts.HostCertificate), 0o644); err != nil {
			return err
		}
	}
	if len(opts.TrustedUserCAKeys) > 0 {
		if err := os.WriteFile(filepath.Join(dir, userCAFile), authorizedKeys(opts.TrustedUserCAKeys), 0o644); err != nil {
			return err
		}
	}
	for login, principals := range opts.AuthorizedPrincipals {
		var b strings.Builder
		for _, p := range principals {
			if strings.ContainsAny(p, "\n\r") {
				return fmt.Errorf("principal %q for %q contains a line break", p, login)
			}
			b.WriteString(p + "\n")
		}
		if err := writeUserFile(dir, principalsDir, login, []byte(b.String())); err != nil {
			return err
		}
	}
	for login, keys := range opts.AuthorizedKeys {
		if err := writeUserFile(dir, authorizedKeyDir, login, authorizedKeys(keys)); err != nil {
			return err
		}
	}
	return nil
}

// writeUserFile writes dir/sub/login, readable by the login (sshd reads
// these files with the user's privileges).
func writeUserFile(dir, sub, login string, data []byte) error {
	if login == "" || login == "." || login == ".." || strings.ContainsAny(login, "/\x00") {
		return fmt.Errorf("bad login name %q", login)
	}
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, sub, login), data, 0o644)
}

func authorizedKeys(keys []ssh.PublicKey) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		b.Write(ssh.MarshalAuthorizedKey(k))
	}
	return b.Bytes()
}

// config renders sshd_config. Every path is absolute: sshd re-executes
// itself and reads the configuration again.
func (s *Server) config(opts Options) string {
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	path := func(name ...string) string { return filepath.Join(append([]string{s.Dir}, name...)...) }
	lines := []string{
		"# written by jumpgate testutil/sshdtest",
		"ListenAddress " + s.Addr,
		"AddressFamily inet",
		"HostKey " + path(hostKeyFile),
		"PidFile " + path(pidFile),
		"LogLevel VERBOSE",
		"StrictModes no",
		"UsePAM no",
		"UseDNS no",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"HostbasedAuthentication no",
		"PermitEmptyPasswords no",
		"PermitUserEnvironment no",
		"AllowAgentForwarding no",
		"X11Forwarding no",
		"PermitTunnel no",
		"GatewayPorts no",
		"AllowTcpForwarding " + yesNo(opts.AllowTcpForwarding),
		"PrintMotd no",
		"PrintLastLog no",
		"Subsystem sftp internal-sftp",
	}
	if opts.HostCertificate != nil {
		lines = append(lines, "HostCertificate "+path(hostCertFile))
	}
	if len(opts.TrustedUserCAKeys) > 0 {
		lines = append(lines, "TrustedUserCAKeys "+path(userCAFile))
	}
	if opts.RevokedKeysFile != "" {
		rk, err := filepath.Abs(opts.RevokedKeysFile)
		if err != nil {
			rk = opts.RevokedKeysFile
		}
		lines = append(lines, "RevokedKeys "+rk)
	}
	if opts.AuthorizedPrincipals != nil {
		lines = append(lines, "AuthorizedPrincipalsFile "+path(principalsDir, "%u"))
	}
	if opts.AuthorizedKeys != nil {
		lines = append(lines, "AuthorizedKeysFile "+path(authorizedKeyDir, "%u"))
	} else {
		lines = append(lines, "AuthorizedKeysFile none")
	}
	lines = append(lines, opts.Extra...)
	return strings.Join(lines, "\n") + "\n"
}
