package test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/test/harness"
)

// userCert loads the key and certificate `jumpgate login` wrote for u.
func userCert(t *testing.T, u *harness.User) (gossh.Signer, *gossh.Certificate) {
	t.Helper()
	kb, err := os.ReadFile(filepath.Join(u.SSHDir, "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := gossh.ParsePrivateKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := os.ReadFile(filepath.Join(u.SSHDir, "id_ed25519-cert.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(cb)
	if err != nil {
		t.Fatal(err)
	}
	cert, ok := pub.(*gossh.Certificate)
	if !ok {
		t.Fatal("not a certificate")
	}
	return key, cert
}

// resign copies cert, lets edit change it and signs it with ca.
func resign(t *testing.T, cert *gossh.Certificate, ca gossh.Signer, edit func(*gossh.Certificate)) *gossh.Certificate {
	t.Helper()
	c := *cert
	c.Permissions.CriticalOptions = map[string]string{}
	for k, v := range cert.CriticalOptions {
		c.Permissions.CriticalOptions[k] = v
	}
	c.ValidPrincipals = append([]string(nil), cert.ValidPrincipals...)
	edit(&c)
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return &c
}

// certSigner offers cert and signs with key. Unlike gossh.NewCertSigner
// it does not check the certificate, so that malformed ones reach the
// bastion.
func certSigner(_ *testing.T, key gossh.Signer, cert *gossh.Certificate) gossh.Signer {
	return rawCertSigner{cert: cert, key: key}
}

type rawCertSigner struct {
	cert *gossh.Certificate
	key  gossh.Signer
}

func (s rawCertSigner) PublicKey() gossh.PublicKey { return s.cert }
func (s rawCertSigner) Sign(r io.Reader, data []byte) (*gossh.Signature, error) {
	return s.key.Sign(r, data)
}

// dialBastion opens an SSH connection to the bastion with one signer.
func dialBastion(addr string, s gossh.Signer) (*gossh.Client, error) {
	return gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            "whoever",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(s)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), // the bastion's identity is not under test here
		Timeout:         20 * time.Second,
	})
}

// openDirect asks the bastion for a direct-tcpip channel with a raw
// payload, so that hosts and ports a client library would reject are sent.
func openDirect(c *gossh.Client, host string, port uint32) (gossh.Channel, error) {
	payload := gossh.Marshal(struct {
		Host       string
		Port       uint32
		OriginAddr string
		OriginPort uint32
	}{host, port, "127.0.0.1", 40000})
	ch, reqs, err := c.OpenChannel("direct-tcpip", payload)
	if err != nil {
		return nil, err
	}
	go gossh.DiscardRequests(reqs)
	return ch, nil
}

// innerConn runs the SSH handshake with the recorded target behind ch.
func innerConn(ch gossh.Channel, login string, s gossh.Signer) (*gossh.Client, error) {
	conn := &chanConn{Channel: ch}
	cc, chans, reqs, err := gossh.NewClientConn(conn, "web-1:22", &gossh.ClientConfig{
		User:            login,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(s)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         20 * time.Second,
	})
	if err != nil {
		ch.Close()
		return nil, err
	}
	return gossh.NewClient(cc, chans, reqs), nil
}

// chanConn makes a channel a net.Conn for the inner handshake.
type chanConn struct{ gossh.Channel }

func (chanConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (chanConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (chanConn) SetDeadline(time.Time) error      { return nil }
func (chanConn) SetReadDeadline(time.Time) error  { return nil }
func (chanConn) SetWriteDeadline(time.Time) error { return nil }

func runOn(c *gossh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

// TestCertificateBypass offers the bastion certificates that must not
// log in: another CA's, host certificates, tampered or re-signed ones with
// forged fields, certificates outside their validity (clock skew), and
// principals the user was never granted.
func TestCertificateBypass(t *testing.T) {
	env := startBastionEnv(t)
	key, cert := userCert(t, env.alice)
	addr := env.srv.SSHAddr

	t.Run("the real certificate works", func(t *testing.T) {
		c, err := dialBastion(addr, certSigner(t, key, cert))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ch, err := openDirect(c, "web-1", 22)
		if err != nil {
			t.Fatal(err)
		}
		in, err := innerConn(ch, "root", certSigner(t, key, cert))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if out, err := runOn(in, "echo inner-ok"); err != nil || !strings.Contains(out, "inner-ok") {
			t.Fatalf("%q %v", out, err)
		}
	})

	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherCA, _ := gossh.NewSignerFromKey(otherPriv)
	now := time.Now()
	refused := []struct {
		name string
		cert func(t *testing.T) *gossh.Certificate
	}{
		{"a certificate from another CA", func(t *testing.T) *gossh.Certificate { return resign(t, cert, otherCA, func(*gossh.Certificate) {}) }},
		{"a host certificate signed by the user CA", func(t *testing.T) *gossh.Certificate {
			return resign(t, cert, env.keys.User, func(c *gossh.Certificate) { c.CertType = gossh.HostCert })
		}},
		{"a host certificate from the host CA", func(t *testing.T) *gossh.Certificate {
			return resign(t, cert, env.keys.Host, func(c *gossh.Certificate) { c.CertType = gossh.HostCert })
		}},
		{"a forged source-address under the old signature", func(t *testing.T) *gossh.Certificate {
			c := *cert
			c.Permissions.CriticalOptions = map[string]string{"source-address": "0.0.0.0/0"}
			return &c
		}},
		{"a principal added under the old signature", func(t *testing.T) *gossh.Certificate {
			c := *cert
			c.ValidPrincipals = append(append([]string(nil), cert.ValidPrincipals...), "admin")
			return &c
		}},
		{"a validly signed source-address elsewhere", func(t *testing.T) *gossh.Certificate {
			return resign(t, cert, env.keys.User, func(c *gossh.Certificate) { c.CriticalOptions["source-address"] = "192.0.2.1/32" })
		}},
		{"not valid yet (clock skew of an hour)", func(t *testing.T) *gossh.Certificate {
			return resign(t, cert, env.keys.User, func(c *gossh.Certificate) { c.ValidAfter = uint64(now.Add(time.Hour).Unix()) })
		}},
		{"expired", func(t *testing.T) *gossh.Certificate {
			return resign(t, cert, env.keys.User, func(c *gossh.Certificate) {
				c.ValidAfter, c.ValidBefore = uint64(now.Add(-2*time.Hour).Unix()), uint64(now.Add(-time.Minute).Unix())
			})
		}},
		{"a serial this CA never issued", func(t *testing.T) *gossh.Certificate {
			return resign(t, cert, env.keys.User, func(c *gossh.Certificate) { c.Serial += 1_000_000 })
		}},
		{"another user's key id on this serial", func(t *testing.T) *gossh.Certificate {
			return resign(t, cert, env.keys.User, func(c *gossh.Certificate) { c.KeyId = "dave/" + strings.SplitN(cert.KeyId, "/", 2)[1] })
		}},
		{"no principals (any login to OpenSSH)", func(t *testing.T) *gossh.Certificate {
			// x/crypto refuses to sign this; ssh-keygen does (without -n).
			dir := t.TempDir()
			pub := filepath.Join(dir, "k.pub")
			if err := os.WriteFile(pub, gossh.MarshalAuthorizedKey(cert.Key), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if out, err := harness.Run(ctx, nil, "ssh-keygen", "-q", "-s", env.keys.UserFile, "-I", cert.KeyId,
				"-z", fmt.Sprint(cert.Serial), "-V", "-5m:+1h", pub); err != nil {
				t.Fatalf("ssh-keygen: %v %s", err, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, "k-cert.pub"))
			if err != nil {
				t.Fatal(err)
			}
			k, _, _, _, err := gossh.ParseAuthorizedKey(b)
			if err != nil {
				t.Fatal(err)
			}
			if c := k.(*gossh.Certificate); len(c.ValidPrincipals) != 0 {
				t.Fatalf("principals %v", c.ValidPrincipals)
			}
			return k.(*gossh.Certificate)
		}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialBastion(addr, certSigner(t, key, tc.cert(t)))
			if err == nil {
				c.Close()
				t.Fatal("the bastion accepted it")
			}
		})
	}
	t.Run("a plain key is refused", func(t *testing.T) {
		if c, err := dialBastion(addr, key); err == nil {
			c.Close()
			t.Fatal("the bastion accepted a plain key")
		}
	})

	t.Run("principals not granted do not widen access", func(t *testing.T) {
		// The CA itself adds logins (only a CA key holder can): the bastion
		// still decides logins by policy, not by the certificate.
		wide := resign(t, cert, env.keys.User, func(c *gossh.Certificate) {
			c.ValidPrincipals = append(c.ValidPrincipals, "admin", "nobody", "ubuntu")
		})
		c, err := dialBastion(addr, certSigner(t, key, wide))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, login := range []string{"admin", "nobody", "ubuntu"} {
			ch, err := openDirect(c, "web-1", 22)
			if err != nil {
				t.Fatal(err)
			}
			if in, err := innerConn(ch, login, certSigner(t, key, wide)); err == nil {
				out, _ := runOn(in, "echo SHOULD-NOT-RUN")
				in.Close()
				t.Fatalf("login %s accepted: %q", login, out)
			}
		}
		// And a target outside the user's roles stays closed.
		if ch, err := openDirect(c, "prod-1", 22); err == nil {
			if in, err := innerConn(ch, "root", certSigner(t, key, wide)); err == nil {
				in.Close()
				t.Fatal("prod-1 reached")
			}
		}
	})
}

// TestSSHReachBypass tries to use the bastion as an open relay: every
// notation of loopback and of the target's own address, odd names, ports
// out of range, forwarding requests and many channels on one connection,
// through the Go client (raw payloads) and the real OpenSSH client (-W,
// ProxyCommand, chained -J).
func TestSSHReachBypass(t *testing.T) {
	env := startBastionEnv(t)
	key, cert := userCert(t, env.alice)
	signer := certSigner(t, key, cert)
	c, err := dialBastion(env.srv.SSHAddr, signer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sshdHost, sshdPort, _ := net.SplitHostPort(env.target)
	bastionHost, bastionPort, _ := net.SplitHostPort(env.srv.SSHAddr)
	var sp uint32
	fmt.Sscan(sshdPort, &sp)

	hosts := []string{
		sshdHost, "127.0.0.1", "2130706433", "0x7f000001", "0x7f.0x0.0x0.0x1", "0177.0.0.1", "017700000001",
		"127.1", "127.0.1", "127.0.0.1.", "[127.0.0.1]", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1",
		"[::ffff:127.0.0.1]", "::ffff:7f00:1", "0:0:0:0:0:ffff:7f00:0001", "fe80::1%lo", "[fe80::1%25lo]", "::1%1",
		"0.0.0.0", "0", "localhost", "localhost.", "LOCALHOST", "localhost.localdomain", "ip6-localhost",
		"web-1.localhost", "example.com", "web-1.example.com", "169.254.169.254", "metadata.google.internal",
		"web-1\x00", "web-1\n", "web-1 ", " web-1", "web_1", "w\u0435b-1", "web-1/../web-1", "../web-1", "web-1:22",
		"web-1%00", "web-*", "*", "prod-1", bastionHost + ":" + bastionPort, strings.Repeat("a", 20000),
	}
	opened := 0
	for _, h := range hosts {
		for _, p := range []uint32{22, sp} {
			if ch, err := openDirect(c, h, p); err == nil {
				ch.Close()
				t.Errorf("channel to %q:%d opened", h, p)
			}
			opened++
		}
	}
	// web-1 answers on 22 and on its configured address's port (the same
	// sshd); every other port is refused.
	for _, p := range []uint32{0, 1, 2222, 65535, 65536, 70000, 1<<32 - 1} {
		if p == sp {
			continue
		}
		if ch, err := openDirect(c, "web-1", p); err == nil {
			ch.Close()
			t.Errorf("channel to web-1:%d opened", p)
		}
		opened++
	}
	t.Run("many refused channels leave the connection usable", func(t *testing.T) {
		for i := 0; i < 300; i++ {
			if ch, err := openDirect(c, "127.0.0.1", 22); err == nil {
				ch.Close()
				t.Fatal("opened")
			}
		}
		var open []gossh.Channel
		for i := 0; i < 20; i++ {
			ch, err := openDirect(c, "web-1", 22)
			if err != nil {
				t.Fatalf("channel %d to web-1 after %d refusals: %v", i, opened+300, err)
			}
			open = append(open, ch)
		}
		in, err := innerConn(open[0], "root", signer)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if out, err := runOn(in, "echo still-serving"); err != nil || !strings.Contains(out, "still-serving") {
			t.Fatalf("%q %v", out, err)
		}
		for _, ch := range open[1:] {
			ch.Close()
		}

		t.Run("agent, X11 and remote forwarding are refused", func(t *testing.T) {
			s, err := in.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if ok, err := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
				t.Errorf("agent forwarding accepted (%v)", err)
			}
			x11 := gossh.Marshal(struct {
				Single        bool
				Proto, Cookie string
				Screen        uint32
			}{false, "MIT-MAGIC-COOKIE-1", "00", 0})
			if ok, err := s.SendRequest("x11-req", true, x11); ok || err != nil {
				t.Errorf("X11 forwarding accepted (%v)", err)
			}
			fwd := gossh.Marshal(struct {
				Addr string
				Port uint32
			}{"127.0.0.1", 0})
			if ok, _, _ := in.SendRequest("tcpip-forward", true, fwd); ok {
				t.Error("-R accepted by the recorded target")
			}
			if ok, _, _ := c.SendRequest("tcpip-forward", true, fwd); ok {
				t.Error("-R accepted by the bastion")
			}
			if ok, _, _ := c.SendRequest("streamlocal-forward@openssh.com", true, gossh.Marshal(struct{ Path string }{"/tmp/jg-sock"})); ok {
				t.Error("remote socket forwarding accepted by the bastion")
			}
		})
	})

	t.Run("OpenSSH -W, ProxyCommand and chained -J", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cfg := env.alice.SSHConfig
		for _, dest := range []string{"2130706433:22", "0177.0.0.1:22", "0x7f000001:22", "127.1:22", "[::ffff:127.0.0.1]:22", "[::1]:22",
			"localhost:22", env.target, "example.com:22", "web-1:2222"} {
			out, err := harness.Run(ctx, nil, "ssh", "-F", cfg, "-W", dest, "jumpgate")
			if err == nil || strings.Contains(out, "SSH-2.0") {
				t.Errorf("ssh -W %s: err=%v out=%q", dest, err, out)
			}
		}
		proxy := "ssh -F " + cfg + " -W %h:%p jumpgate"
		if out, err := harness.Run(ctx, nil, "ssh", "-F", cfg, "-o", "ProxyCommand="+proxy, "root@web-1", "echo via-proxycommand"); err != nil || !strings.Contains(out, "via-proxycommand") {
			t.Errorf("ProxyCommand to an allowed target: %v %q", err, out)
		}
		for _, dest := range []string{"root@127.0.0.1", "root@localhost"} {
			if out, err := harness.Run(ctx, nil, "ssh", "-F", cfg, "-o", "ProxyCommand="+proxy, dest, "echo SHOULD-NOT-RUN"); err == nil || strings.Contains(out, "SHOULD-NOT-RUN") {
				t.Errorf("ProxyCommand to %s: %q", dest, out)
			}
		}
		// The bastion as its own next hop: the second hop is a raw address.
		if out, err := harness.Run(ctx, nil, "ssh", "-F", cfg, "-J", "jumpgate,jumpgate", "root@web-1", "echo SHOULD-NOT-RUN"); err == nil || strings.Contains(out, "SHOULD-NOT-RUN") {
			t.Errorf("-J jumpgate,jumpgate: %q", out)
		}
	})
}

// TestInteractiveBypass types blocked lines into a recorded interactive
// shell the ways a person could try to slip them through: several lines
// pasted at once, more input sent right behind the blocked Enter, history
// recall of the refused line, and a line continued with a backslash.
func TestInteractiveBypass(t *testing.T) {
	env := startBastionEnv(t)
	dir := t.TempDir() // the target is this machine's sshd
	marker := func(n int) string { return filepath.Join(dir, fmt.Sprintf("m%d", n)) }
	term := harness.StartTerminal(t, "ssh", env.alice.SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "the first prompt", term.Seen("# "))
	term.Type("PS1='jg-''prompt% '\r")
	harness.WaitFor(t, 30*time.Second, "the prompt", term.Seen("jg-prompt% "))

	// Like a person, type each line once its prompt is shown (type-ahead
	// before the prompt is a documented limit): sync runs an echo and waits
	// for its output and the prompt after it. When the shell kept text
	// typed ahead of the gate's Ctrl-C (bash may redisplay it; the gate
	// checks it with the next Enter and blocks it again, so nothing runs,
	// but the line is stuck) it does what a person does: Ctrl-C and retry.
	sync := func(tag string) {
		t.Helper()
		seen := func() bool {
			out := term.Output()
			k := strings.LastIndex(out, tag+"-42\r\n")
			return k >= 0 && strings.Contains(out[k:], "jg-prompt% ")
		}
		for attempt := 0; attempt < 5; attempt++ {
			if attempt > 0 {
				term.Type("\x03")
			}
			term.Type("echo " + tag + "-$((40+2))\r")
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if seen() {
					return
				}
			}
		}
		t.Fatalf("the session did not come back after %s", tag)
	}
	blocks := func(n int) func() bool {
		// The block message, then the fresh prompt the gate's Ctrl-C
		// brings: typing before it is type-ahead.
		return func() bool {
			out := term.Output()
			k := strings.LastIndex(out, "blocked by policy")
			return strings.Count(out, "blocked by policy") >= n && strings.Contains(out[k:], "jg-prompt% ")
		}
	}
	sync("start")

	// A paste: three lines in one write; the second is blocked (and what
	// was typed after it in the same write is dropped with it).
	term.Type("echo pasted-$((1+1))\rmkfs.jgtest /dev/null; touch " + marker(1) + "\recho pasted-$((1+2))\r")
	harness.WaitFor(t, 30*time.Second, "the block message", blocks(1))
	sync("after-paste")

	// Input right behind the blocked Enter, then the refused line
	// recalled from history and entered again.
	term.Type("mkfs.jgtest /dev/null; touch " + marker(2) + "\recho behind-$((2+2))\r")
	harness.WaitFor(t, 30*time.Second, "the block message", blocks(2))
	sync("after-behind")
	term.Type("\x1b[A\x1b[A\r")
	sync("after-history")

	// A blocked command split over two lines with a backslash: the second
	// line is checked together with the first.
	term.Type("mk\\\r")
	harness.WaitFor(t, 30*time.Second, "the continuation prompt", func() bool {
		out := term.Output()
		return strings.HasSuffix(strings.TrimRight(out, " "), ">") || strings.HasSuffix(out, "> ")
	})
	term.Type("fs.jgtest /dev/null; touch " + marker(3) + "\r")
	harness.WaitFor(t, 30*time.Second, "the block message", blocks(3))
	sync("after-continuation")

	term.Type("exit\r")
	term.Wait(t, 30*time.Second)
	for i := 1; i <= 3; i++ {
		if _, err := os.Stat(marker(i)); err == nil {
			t.Errorf("blocked line %d ran", i)
		}
	}
}
