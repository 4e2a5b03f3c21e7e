package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
)

// rssBytes is the resident memory of a process.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// floodConn is what became of one connection of sshFlood.
type floodConn struct {
	banner bool  // the server started the SSH protocol
	err    error // how the connection ended (on ends only)
}

// sshFlood opens n TCP connections to addr that never start the SSH
// handshake and watches each: banners gets one value per connection when
// the server sends its banner or drops it, ends one when the server closes
// it. The connections are closed when the test ends.
func sshFlood(t *testing.T, d *net.Dialer, addr string, n int) (banners, ends <-chan floodConn) {
	bc, ec := make(chan floodConn, n), make(chan floodConn, n)
	var wg sync.WaitGroup
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bufio.NewReader(c)
			line, err := r.ReadString('\n')
			o := floodConn{banner: strings.HasPrefix(line, "SSH-2.0-")}
			bc <- o
			if err == nil {
				_, err = io.Copy(io.Discard, r) // until the server closes it
			}
			o.err = err
			ec <- o
		}()
	}
	return bc, ec
}

// floodCount tallies the floodConns of one sshFlood channel.
type floodCount struct {
	ch              <-chan floodConn
	dropped, served int
}

// until returns a WaitFor condition: take what has arrived, then cond.
func (f *floodCount) until(cond func() bool) func() bool {
	return func() bool {
		for {
			select {
			case o := <-f.ch:
				if o.banner {
					f.served++
				} else {
					f.dropped++
				}
				continue
			default:
			}
			return cond()
		}
	}
}

// TestHandshakeFlood opens many TCP connections to the bastion that never
// start the SSH handshake, beyond bastion.max_startups: those beyond the
// limit are closed at once (no SSH banner), an established user's session
// keeps working through the flood, login_grace_time closes the idle ones,
// and then new logins get in again — sshd's MaxStartups behaviour.
func TestHandshakeFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const maxStartups, flood = 10, 60
	env := startBastionEnvWith(t, "max_startups: 10, login_grace_time: 3s")
	term := harness.StartTerminal(t, "ssh", env.alice.SSHArgs("root", "web-1", "-tt")...)
	harness.WaitFor(t, 30*time.Second, "a shell prompt", term.Seen("#"))

	_, results := sshFlood(t, &net.Dialer{}, env.srv.SSHAddr, flood)
	// Dropped connections end at once, without a banner; served ones get
	// the banner and are closed by login_grace_time.
	fc := &floodCount{ch: results}
	harness.WaitFor(t, 30*time.Second, "the connections beyond max_startups to be dropped", fc.until(func() bool { return fc.dropped >= flood-maxStartups }))
	// Established users are not affected.
	term.Type("echo during-flood-$((3*3))\r")
	harness.WaitFor(t, 30*time.Second, "the established session to answer", term.Seen("during-flood-9"))
	harness.WaitFor(t, 60*time.Second, "login_grace_time to close the idle connections", fc.until(func() bool { return fc.dropped+fc.served == flood }))
	dropped, served := fc.dropped, fc.served
	if served > maxStartups || dropped < flood-maxStartups {
		t.Fatalf("%d connections served, %d dropped; max_startups %d", served, dropped, maxStartups)
	}
	t.Logf("%d unauthenticated connections: %d dropped at once, %d closed by login_grace_time", flood, dropped, served)
	ctx := ctxT(t, 60*time.Second)
	if out, err := env.dave.SSH(ctx, "root", "web-1", "echo after-flood"); err != nil || !strings.Contains(out, "after-flood") {
		t.Fatalf("new login after the flood: %v %q", err, out)
	}
	if !strings.Contains(env.srv.Proc.Out.String(), "too many unauthenticated connections") {
		t.Fatal("the drops were not logged")
	}
}

// TestHandshakeFloodFromOneAddress holds unauthenticated connections
// from one address (127.0.0.2) beyond bastion.per_source_max_startups:
// those beyond the per-address limit are dropped at once, and a user from
// another address (127.0.0.1) still logs in while the flood's connections
// are held open — one address cannot take every max_startups slot.
func TestHandshakeFloodFromOneAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const perSource, flood = 5, 30
	env := startBastionEnvWith(t, "max_startups: 30, per_source_max_startups: 5, login_grace_time: 60s")
	banners, _ := sshFlood(t, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}, env.srv.SSHAddr, flood)
	fc := &floodCount{ch: banners} // served ones are then held open until the test ends
	harness.WaitFor(t, 30*time.Second, "the connections beyond the per-address limit to be dropped", fc.until(func() bool {
		return fc.dropped >= flood-perSource && fc.served == perSource
	}))
	// The flood holds its slots (login_grace_time is a minute); another
	// address logs in meanwhile.
	ctx := ctxT(t, 60*time.Second)
	if out, err := env.dave.SSH(ctx, "root", "web-1", "echo beside-flood"); err != nil || !strings.Contains(out, "beside-flood") {
		t.Fatalf("login from another address during the flood: %v %q", err, out)
	}
	if fc.until(func() bool { return true })(); fc.dropped != flood-perSource {
		t.Fatalf("%d dropped, want %d", fc.dropped, flood-perSource)
	}
	if !strings.Contains(env.srv.Proc.Out.String(), "too many unauthenticated connections from one address") {
		t.Fatal("the drops were not logged")
	}
}

// TestSlowlorisHTTPS holds many HTTPS connections open sending their
// request headers a byte at a time (and more that never finish the TLS
// handshake): the API keeps answering other clients, and the server closes
// the slow ones itself (ReadHeaderTimeout).
func TestSlowlorisHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const slow, silent = 150, 100
	idp := harness.StartIdP(t)
	srv := harness.StartServer(t, harness.ServerOptions{IdP: idp, Policy: bastionPolicy})
	addr := strings.TrimPrefix(srv.URL, "https://")
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var closedByServer atomic.Int64
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})
	for i := 0; i < slow; i++ {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("tls dial %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stopClose := context.AfterFunc(ctx, func() { c.Close() })
			defer stopClose()
			req := "GET /healthz HTTP/1.1\r\nHost: x\r\n"
			for j := 0; ; j++ {
				b := []byte{'X'}
				if j < len(req) {
					b[0] = req[j]
				}
				if _, err := c.Write(b); err != nil {
					if ctx.Err() == nil {
						closedByServer.Add(1)
					}
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	for i := 0; i < silent; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stopClose := context.AfterFunc(ctx, func() { c.Close() })
			defer stopClose()
			_, _ = io.Copy(io.Discard, c)
			if ctx.Err() == nil {
				closedByServer.Add(1)
			}
		}()
	}
	// Others are served meanwhile.
	hc := harness.TLSClient(t, srv.CAFile)
	for i := 0; i < 20; i++ {
		for _, p := range []string{"/healthz", "/v1/ca/user"} {
			resp, err := hc.Get(srv.URL + p)
			if err != nil {
				t.Fatalf("GET %s during slowloris: %v", p, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s during slowloris: %d", p, resp.StatusCode)
			}
		}
	}
	// The server drops them itself.
	harness.WaitFor(t, 60*time.Second, "the server to close the slow connections", func() bool {
		return closedByServer.Load() == slow+silent
	})
}

// sshClientAs connects to the bastion in process (x/crypto/ssh) with u's
// key and certificate, verifying the bastion against u's known_hosts.
func sshClientAs(t *testing.T, u *harness.User, addr string) *ssh.Client {
	t.Helper()
	keyPEM, err := os.ReadFile(filepath.Join(u.SSHDir, "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certLine, err := os.ReadFile(filepath.Join(u.SSHDir, "id_ed25519-cert.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(certLine)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewCertSigner(pub.(*ssh.Certificate), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: u.Name, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostCAChecker(t, u), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("ssh to the bastion: %v", err)
	}
	return c
}

// hostCAChecker verifies host certificates against the host CA in u's
// known_hosts (its "@cert-authority * KEY" line), as OpenSSH does.
func hostCAChecker(t *testing.T, u *harness.User) ssh.HostKeyCallback {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(u.SSHDir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, ca, _, _, err := ssh.ParseKnownHosts(b)
	if err != nil {
		t.Fatal(err)
	}
	cc := &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
		return bytes.Equal(auth.Marshal(), ca.Marshal())
	}}
	return cc.CheckHostKey
}

// TestManyChannelsOneConnection opens 10,000 channels on one connection:
// those beyond bastion.max_channels open at once are refused (resource
// shortage), the server keeps serving others, its memory stays bounded,
// and its goroutines go back down when the connection ends.
func TestManyChannelsOneConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const opens, workers = 10000, 16
	env := startBastionEnv(t)
	pid := env.srv.Proc.Cmd.Process.Pid
	baseG := settledGoroutines(t, env.srv)
	baseRSS := rssBytes(t, pid)

	c := sshClientAs(t, env.alice, env.srv.SSHAddr)
	var accepted, refused atomic.Int64
	var mu sync.Mutex
	var open []ssh.Channel
	var refusal error
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				ch, reqs, err := c.OpenChannel("session", nil)
				if err != nil {
					var oce *ssh.OpenChannelError
					if !errors.As(err, &oce) || oce.Reason != ssh.ResourceShortage {
						t.Errorf("channel open: %v", err)
						return
					}
					refused.Add(1)
					mu.Lock()
					refusal = err
					mu.Unlock()
					continue
				}
				go ssh.DiscardRequests(reqs) // ends when the connection closes
				accepted.Add(1)
				mu.Lock()
				open = append(open, ch) // kept open: they count against the limit
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < opens; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d channel opens: %d accepted, %d refused (%v)", opens, accepted.Load(), refused.Load(), refusal)
	if accepted.Load() != 100 || accepted.Load()+refused.Load() != opens || !strings.Contains(refusal.Error(), "too many channels") {
		t.Fatalf("accepted %d, refused %d: %v", accepted.Load(), refused.Load(), refusal)
	}
	// Responsive: another user gets in and runs a command; so does this
	// connection once it closes a channel.
	ctx := ctxT(t, 60*time.Second)
	if out, err := env.dave.SSH(ctx, "root", "web-1", "echo still-responsive"); err != nil || !strings.Contains(out, "still-responsive") {
		t.Fatalf("during the channel flood: %v %q", err, out)
	}
	open[0].Close()
	harness.WaitFor(t, 30*time.Second, "a channel slot to be free again", func() bool {
		ch, reqs, err := c.OpenChannel("session", nil)
		if err != nil {
			return false
		}
		go ssh.DiscardRequests(reqs)
		ch.Close()
		return true
	})
	rss := rssBytes(t, pid)
	t.Logf("server RSS %d MiB before, %d MiB with the flood", baseRSS>>20, rss>>20)
	if rss-baseRSS > 256<<20 {
		t.Fatalf("server memory grew by %d MiB", (rss-baseRSS)>>20)
	}
	c.Close()
	harness.WaitFor(t, 30*time.Second, "the server's goroutines to return to their level", func() bool {
		return settledGoroutines(t, env.srv) <= baseG
	})
}

// TestGigabyteOutput streams 1 GiB of output from a recorded target while
// another user keeps working: every byte arrives, the other user is served
// meanwhile, and the recording keeps its documented cap (a non-interactive
// session's streams are recorded up to 4 MiB each; the byte counts are
// complete).
func TestGigabyteOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const size = 1 << 30
	env := startBastionEnv(t)
	ctx := ctxT(t, 300*time.Second)
	c := sshClientAs(t, env.alice, env.srv.SSHAddr)
	defer c.Close()
	// ssh -J, in process: the inner connection runs over a direct-tcpip
	// channel to web-1.
	tunnel, err := c.Dial("tcp", "web-1:22")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := os.ReadFile(filepath.Join(env.alice.SSHDir, "id_ed25519"))
	key, _ := ssh.ParsePrivateKey(keyPEM)
	certLine, _ := os.ReadFile(filepath.Join(env.alice.SSHDir, "id_ed25519-cert.pub"))
	pub, _, _, _, _ := ssh.ParseAuthorizedKey(certLine)
	signer, _ := ssh.NewCertSigner(pub.(*ssh.Certificate), key)
	ic, chans, reqs, err := ssh.NewClientConn(tunnel, "web-1:22", &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostCAChecker(t, env.alice)})
	if err != nil {
		t.Fatalf("inner ssh to web-1: %v", err)
	}
	inner := ssh.NewClient(ic, chans, reqs)
	defer inner.Close()
	sess, err := inner.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("head -c " + strconv.Itoa(size) + " /dev/zero"); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	copied := make(chan error, 1)
	go func() {
		n, err := io.Copy(io.Discard, &countingReader{r: out, n: &got})
		_ = n
		copied <- err
	}()
	harness.WaitFor(t, 60*time.Second, "the output to flow", func() bool { return got.Load() > 0 })
	// Meanwhile another user works.
	served := 0
	for got.Load() < size && served < 5 {
		if out, err := env.dave.SSH(ctx, "root", "web-1", "echo meanwhile"); err != nil || !strings.Contains(out, "meanwhile") {
			t.Fatalf("another user during the 1 GiB stream: %v %q", err, out)
		}
		served++
	}
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil {
		t.Fatalf("the stream: %v", err)
	}
	if got.Load() != size {
		t.Fatalf("received %d bytes, want %d", got.Load(), size)
	}
	t.Logf("another user ran %d commands while 1 GiB streamed", served)
	if served == 0 {
		t.Fatal("nobody else was served during the stream")
	}
	inner.Close()
	harness.WaitFor(t, 30*time.Second, "the session to end", func() bool {
		s, ok := sessionByID(t, env.srv, func(s storage.Session) bool { return strings.HasPrefix(s.Command, "head -c") })
		return ok && s.Status == storage.SessionEnded
	})
	s, _ := sessionByID(t, env.srv, func(s storage.Session) bool { return strings.HasPrefix(s.Command, "head -c") })
	st, err := os.Stat(filepath.Join(env.srv.DataDir, "recordings", s.Recording))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session bytes %d, recording file %d bytes", s.Bytes, st.Size())
	if s.Bytes < size || st.Size() > 64<<20 {
		t.Fatalf("session bytes %d, recording %d bytes", s.Bytes, st.Size())
	}
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
