package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/sshdtest"
)

// The one cipher and key exchange every run uses, on both sides of every
// hop, so jumpgate and OpenSSH do the same cryptographic work: AES-GCM is
// the fastest cipher both OpenSSH and x/crypto/ssh offer on CPUs with
// AES-NI, curve25519 the key exchange both offer (OpenSSH would otherwise
// pick sntrup761x25519 between two OpenSSH peers, which Go lacks).
const (
	benchCipher = "aes128-gcm@openssh.com"
	benchKex    = "curve25519-sha256"
)

// Names the jumpgate server knows its targets by.
const (
	recordedTarget    = "web-1"
	passthroughTarget = "web-raw"
)

const benchPolicy = `
roles:
  - name: eng
    groups: [engineering]
    logins: [root]
    targets: {labels: {env: bench}}
    # The certificate must permit port forwarding for the OpenSSH jump
    # host (the reference) to serve -J with it.
    allow: {port_forwarding: true}
`

// sshdExtra lets the OpenSSH servers take many connections at once (the
// default MaxStartups 10:30:100 drops concurrent unauthenticated ones)
// and keeps their logging quiet enough not to cost time.
var sshdExtra = []string{"MaxStartups 512:30:1024"}

// Env is everything the benchmarks share: one target sshd, the OpenSSH
// jump host (the reference), the dev IdP and a jumpgate server with a
// recorded and a passthrough entry for that target, and a logged-in user.
type Env struct {
	TB   *programTB
	Log  *slog.Logger
	Keys harness.CAKeys
	// Target is the real sshd every session ends at.
	Target *sshdtest.Server
	// RefJump is the OpenSSH sshd used as the -J jump host.
	RefJump *sshdtest.Server
	IdP     *harness.IdP
	Server  *harness.Server
	User    *harness.User
	// SSHConfig reaches "jumpgate" (the bastion), "refjump" (OpenSSH jump
	// host) and "target" (the sshd, by address) with the user's cert.
	SSHConfig string
	// Signer is the user's key with its certificate, for in-process clients.
	Signer ssh.Signer
	Flags  *Flags
}

// Reference route names for the ssh command line.
const (
	jgJump  = "jumpgate"
	refJump = "refjump"
	refDest = "target"
)

func setupEnv(ctx context.Context, tb *programTB, log *slog.Logger, fl *Flags) *Env {
	e := &Env{TB: tb, Log: log, Flags: fl}
	e.Keys = harness.NewCAKeys(tb)
	log.Info("starting target sshd and the OpenSSH jump host")
	e.Target = e.Keys.StartCertSSHD(tb, []string{recordedTarget, passthroughTarget}, sshdExtra...)
	e.RefJump = e.Keys.StartCertSSHD(tb, []string{refJump}, sshdExtra...)
	e.IdP = harness.StartIdP(tb)
	log.Info("building and starting jumpgate server")
	labels := map[string]string{"env": "bench"}
	e.Server = harness.StartServer(tb, harness.ServerOptions{
		IdP: e.IdP, Policy: benchPolicy,
		ExtraConfig: e.Keys.CAConfig("3h", "3h"),
		Targets: []harness.Target{
			{Name: recordedTarget, Kind: "ssh", Address: e.Target.Addr, HostKey: "@cert-authority", Labels: labels},
			{Name: passthroughTarget, Kind: "ssh", Address: e.Target.Addr, HostKey: "@cert-authority", Record: boolp(false), Labels: labels},
		},
	})
	e.User = e.Server.Login(tb, "alice")
	e.SSHConfig = filepath.Join(tb.TempDir(), "ssh_config")
	if err := os.WriteFile(e.SSHConfig, []byte(e.sshConfig()), 0o600); err != nil {
		tb.Fatalf("bench: %v", err)
	}
	e.Signer = loadCertSigner(tb, e.User.SSHDir)
	return e
}

func boolp(b bool) *bool { return &b }

func (e *Env) sshConfig() string {
	jh, jp, _ := net.SplitHostPort(e.Server.SSHAddr)
	return fmt.Sprintf(`Host %[1]s
  HostName %[2]s
  Port %[3]s
  User %[4]s

Host %[5]s
  HostName 127.0.0.1
  Port %[6]d
  User root

Host %[7]s
  HostName 127.0.0.1
  Port %[8]d

`, jgJump, jh, jp, e.User.Name, refJump, e.RefJump.Port, refDest, e.Target.Port) + sshCommon(e.User.SSHDir)
}

// sshCommon is the "Host *" block of every ssh_config of the run: the
// user's certificate under sshDir, strict host CA checking, the bench
// cipher and kex, no multiplexing.
func sshCommon(sshDir string) string {
	return fmt.Sprintf(`Host *
  IdentityFile %[1]s/id_ed25519
  CertificateFile %[1]s/id_ed25519-cert.pub
  UserKnownHostsFile %[1]s/known_hosts
  GlobalKnownHostsFile /dev/null
  IdentitiesOnly yes
  IdentityAgent none
  StrictHostKeyChecking yes
  CheckHostIP no
  UpdateHostKeys no
  BatchMode yes
  ConnectTimeout 30
  ControlMaster no
  ControlPath none
  Compression no
  Ciphers %[2]s
  KexAlgorithms %[3]s
  LogLevel ERROR
`, sshDir, benchCipher, benchKex)
}

// route is one way to reach the target: through jumpgate (recorded or
// passthrough entry) or through the OpenSSH jump host.
type route struct {
	Name string
	// Jump and Dest for the ssh command line (-J Jump root@Dest).
	Jump, Dest string
	// JumpAddr, JumpUser and InnerAddr for in-process clients.
	JumpAddr, JumpUser, InnerAddr string
}

func (e *Env) jgRoute(target string) route {
	return route{Name: "jumpgate " + target, Jump: jgJump, Dest: target, JumpAddr: e.Server.SSHAddr, JumpUser: e.User.Name,
		InnerAddr: net.JoinHostPort(target, "22")}
}

func (e *Env) refRoute() route {
	return route{Name: "OpenSSH sshd -J", Jump: refJump, Dest: refDest, JumpAddr: e.RefJump.Addr, JumpUser: "root",
		InnerAddr: e.Target.Addr}
}

// sshArgs is `ssh -F cfg -J jump [extra] root@dest`.
func (e *Env) sshArgs(r route, extra ...string) []string {
	args := []string{"-F", e.SSHConfig, "-J", r.Jump}
	args = append(args, extra...)
	return append(args, "root@"+r.Dest)
}

func loadCertSigner(tb *programTB, sshDir string) ssh.Signer {
	keyPEM, err := os.ReadFile(filepath.Join(sshDir, "id_ed25519"))
	if err != nil {
		tb.Fatalf("bench: %v", err)
	}
	key, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		tb.Fatalf("bench: user key: %v", err)
	}
	certLine, err := os.ReadFile(filepath.Join(sshDir, "id_ed25519-cert.pub"))
	if err != nil {
		tb.Fatalf("bench: %v", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(certLine)
	if err != nil {
		tb.Fatalf("bench: user cert: %v", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		tb.Fatalf("bench: %s is not a certificate", certLine)
	}
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		tb.Fatalf("bench: %v", err)
	}
	return s
}

// clientConfig is the in-process client's config for one hop: the user's
// certificate, the host CA as the only trust, the bench cipher and kex.
func (e *Env) clientConfig(user string) *ssh.ClientConfig {
	hostCA := e.Keys.Host.PublicKey().Marshal()
	checker := &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
		return bytes.Equal(auth.Marshal(), hostCA)
	}}
	return &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(e.Signer)},
		HostKeyCallback: checker.CheckHostKey, Timeout: 60 * time.Second,
		Config: ssh.Config{Ciphers: []string{benchCipher}, KeyExchanges: []string{benchKex}},
	}
}

// jumpClient is what `ssh -J` builds, in process: a connection to the jump
// host, a direct-tcpip channel through it, and an SSH client over that.
type jumpClient struct {
	outer, inner *ssh.Client
}

func (e *Env) dialJump(r route) (*jumpClient, error) {
	outer, err := ssh.Dial("tcp", r.JumpAddr, e.clientConfig(r.JumpUser))
	if err != nil {
		return nil, fmt.Errorf("bench: dial jump host %s: %w", r.JumpAddr, err)
	}
	conn, err := outer.Dial("tcp", r.InnerAddr)
	if err != nil {
		outer.Close()
		return nil, fmt.Errorf("bench: direct-tcpip to %s: %w", r.InnerAddr, err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, r.InnerAddr, e.clientConfig("root"))
	if err != nil {
		conn.Close()
		outer.Close()
		return nil, fmt.Errorf("bench: inner handshake with %s: %w", r.InnerAddr, err)
	}
	return &jumpClient{outer: outer, inner: ssh.NewClient(c, chans, reqs)}, nil
}

func (j *jumpClient) Close() {
	j.inner.Close()
	j.outer.Close()
}

// ptyModes keep the remote terminal plain: echo on (the kernel echoes a
// typed byte), a wide window.
var ptyModes = ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}

// logTail is the end of the jump host's log for r, for error messages.
func (e *Env) logTail(r route) string {
	var l string
	if r.Jump == refJump {
		l = e.RefJump.Logs()
	} else {
		l = e.Server.Proc.Out.String()
	}
	if len(l) > 1500 {
		l = l[len(l)-1500:]
	}
	return "\n--- " + r.Name + " log ---\n" + l
}
