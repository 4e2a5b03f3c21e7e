package bastion

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/ca"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/relay"
)

// innerConn is one terminated inner SSH connection: the user's session to a
// recorded target, run by the bastion, and the bastion's own connection
// upstream.
type innerConn struct {
	s      *Server
	id     string
	u      *User
	t      config.Target
	login  string
	access policy.Access
	sc     *gossh.ServerConn
	up     *gossh.Client
	upErr  error
	ctx    context.Context
	wg     sync.WaitGroup
	// sessions counts the session channels (also in wg).
	sessions sync.WaitGroup
	// upGone is closed when the upstream connection has ended.
	upGone chan struct{}
}

// sessionGoodbye bounds how long an ending inner connection waits for its
// sessions to pass on why they end.
const sessionGoodbye = 5 * time.Second

var errTargetDown = errors.New("target unreachable")

// terminate runs the inner SSH session of a recorded or local target.
func (s *Server) terminate(ctx context.Context, u *User, t config.Target, nc gossh.NewChannel) {
	if s.cfg.FailClosed {
		if err := s.recordings().CheckWritable(ctx); err != nil {
			s.log.Error("recordings cannot be written; refusing recorded session", "target", t.Name, "user", u.Name, "err", err)
			s.auditRefusal(u, t.Name, "recording_unavailable", "session")
			nc.Reject(gossh.ResourceShortage, "jumpgate: sessions cannot be recorded right now, so recorded sessions are refused; contact the operators")
			return
		}
	}
	hk, err := s.keys.signer(ctx, t.Name, s.cfg.Clock())
	if err != nil {
		s.log.Error("host certificate for target", "target", t.Name, "err", err)
		nc.Reject(gossh.ConnectionFailed, "jumpgate: internal error")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	go gossh.DiscardRequests(reqs)
	ic := &innerConn{s: s, id: newID("s"), u: u, t: t, upGone: make(chan struct{})}
	var authFail []string
	var failMu sync.Mutex
	conf := &gossh.ServerConfig{
		MaxAuthTries:  6,
		ServerVersion: "SSH-2.0-jumpgate",
		PublicKeyCallback: func(meta gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Permissions, error) {
			fail := func(reason string, err error) (*gossh.Permissions, error) {
				failMu.Lock()
				authFail = append(authFail, reason)
				failMu.Unlock()
				s.log.Info("inner authentication refused", "user", u.Name, "target", t.Name, "login", meta.User(), "reason", reason, "err", err)
				return nil, errors.New("permission denied")
			}
			u2, reason, err := s.authenticate(ctx, key, tcpAddr(u.Source))
			if err != nil {
				return fail(reason, err)
			}
			if subtle.ConstantTimeCompare([]byte(u2.Cert.KeyId), []byte(u.Cert.KeyId)) != 1 {
				return fail("certificate_mismatch", errors.New("inner certificate differs from the bastion login"))
			}
			acc := s.cfg.Policy.Current().AccessTo(u2.Identity(), policyTarget(t))
			if !acc.Allowed || !slices.Contains(acc.Logins, meta.User()) {
				return fail("login_not_allowed", fmt.Errorf("login %q not granted on %s (granted: %v)", meta.User(), t.Name, acc.Logins))
			}
			return &gossh.Permissions{Extensions: map[string]string{"login": meta.User(), "key": gossh.FingerprintSHA256(key)}}, nil
		},
	}
	conf.AddHostKey(hk)
	cc := &chanConn{Channel: ch, local: nameAddr(t.Name + ":22"), remote: tcpAddr(u.Source)}
	grace := time.AfterFunc(s.cfg.LoginGraceTime, func() { ch.Close() })
	sc, chans, greqs, err := gossh.NewServerConn(cc, conf)
	grace.Stop()
	if err != nil {
		failMu.Lock()
		fails := slices.Clone(authFail)
		failMu.Unlock()
		if len(fails) > 0 {
			s.auditRefusal(u, t.Name, fails[len(fails)-1], "inner-ssh")
		}
		s.log.Info("inner ssh handshake failed", "user", u.Name, "target", t.Name, "err", err)
		ch.Close()
		return
	}
	ic.sc = sc
	ic.login = sc.Permissions.Extensions["login"]
	ic.access = s.cfg.Policy.Current().AccessTo(u.Identity(), policyTarget(t))
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ic.ctx = cctx
	ic.up, ic.upErr = s.dialUpstream(cctx, u, t, ic.login, ic.id, ic.access)
	// Ending the inner connection ends the upstream one too; the reverse
	// channel loops (counted in ic.wg) only stop when it is closed. The
	// running sessions get to tell their users why (the target was lost,
	// a revocation, shutdown) before the inner connection goes; a session
	// whose client does not take the message is not waited for long.
	watchDone := make(chan struct{})
	stopWatch := context.AfterFunc(cctx, func() {
		defer close(watchDone)
		if ic.up != nil {
			ic.up.Close()
		}
		sessionsDone := make(chan struct{})
		go func() {
			ic.sessions.Wait() // ends at the latest with terminate's ic.wg.Wait
			close(sessionsDone)
		}()
		t := time.NewTimer(sessionGoodbye)
		select {
		case <-sessionsDone:
		case <-t.C:
		}
		t.Stop()
		sc.Close()
	})
	defer func() {
		if stopWatch() {
			close(watchDone)
		}
		<-watchDone
	}()
	if ic.upErr != nil {
		s.log.Warn("upstream connection failed", "target", t.Name, "user", u.Name, "err", ic.upErr)
	} else {
		ic.startReverseChannels()
		go func() {
			_ = ic.up.Wait()
			close(ic.upGone)
			cancel(errTargetDown)
		}()
	}
	ic.wg.Add(1)
	go func() {
		defer ic.wg.Done()
		ic.handleGlobal(greqs)
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ic.wg.Add(1)
			ic.sessions.Add(1)
			go func() {
				defer ic.wg.Done()
				defer ic.sessions.Done()
				ic.session(nc)
			}()
		case "direct-tcpip":
			ic.wg.Add(1)
			go func() {
				defer ic.wg.Done()
				ic.forward(nc)
			}()
		default:
			nc.Reject(gossh.UnknownChannelType, "jumpgate: channel type not supported")
		}
	}
	cancel(errConnClosed)
	ic.wg.Wait()
}

type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

// dialUpstream connects to the real target with a freshly minted
// certificate for exactly this login.
func (s *Server) dialUpstream(ctx context.Context, u *User, t config.Target, login, connID string, acc policy.Access) (*gossh.Client, error) {
	if t.Kind == config.KindLocal {
		if s.cfg.LocalShell == nil {
			return nil, errors.New("bastion: local targets are not enabled")
		}
		return s.cfg.LocalShell.Connect(ctx, t, login)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	base, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	cert, err := s.cfg.Authority.SignUpstream(ctx, ca.UpstreamRequest{
		PublicKey: base.PublicKey(), Username: u.Name, Login: login, SessionID: connID, TTL: s.cfg.UpstreamCertTTL,
		PortForwarding: acc.Allow.PortForwarding, AgentForwarding: acc.Allow.AgentForwarding, X11Forwarding: acc.Allow.X11Forwarding,
	})
	if err != nil {
		return nil, err
	}
	signer, err := gossh.NewCertSigner(cert, base)
	if err != nil {
		return nil, err
	}
	hkcb, algos, err := s.hostKeyCallback(t)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := s.cfg.Dial(dctx, "tcp", t.Address)
	if err != nil {
		return nil, fmt.Errorf("bastion: dial %s: %w", t.Name, err)
	}
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	c, chans, reqs, err := gossh.NewClientConn(conn, t.Address, &gossh.ClientConfig{
		User: login, Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: hkcb, HostKeyAlgorithms: algos, ClientVersion: "SSH-2.0-jumpgate",
	})
	if !stop() {
		if err == nil {
			c.Close()
		}
		return nil, fmt.Errorf("bastion: ssh handshake with %s timed out", t.Name)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("bastion: ssh to %s: %w", t.Name, err)
	}
	return gossh.NewClient(c, chans, reqs), nil
}

var certHostAlgos = []string{
	gossh.CertAlgoED25519v01, gossh.CertAlgoECDSA256v01, gossh.CertAlgoECDSA384v01, gossh.CertAlgoECDSA521v01,
	gossh.CertAlgoRSASHA512v01, gossh.CertAlgoRSASHA256v01,
}

// hostKeyCallback verifies an upstream's host key against the host CA or a
// pinned key. There is no trust on first use.
func (s *Server) hostKeyCallback(t config.Target) (gossh.HostKeyCallback, []string, error) {
	switch hk := strings.TrimSpace(t.HostKey); {
	case hk == "@cert-authority":
		host, _, _ := net.SplitHostPort(t.Address)
		return func(_ string, _ net.Addr, key gossh.PublicKey) error {
			cert, ok := key.(*gossh.Certificate)
			if !ok {
				return fmt.Errorf("bastion: %s presented a plain host key; give it a host certificate (jumpgate ca sign-host) or pin its key in host_key", t.Name)
			}
			if cert.CertType != gossh.HostCert || !s.cfg.Authority.IsHostCA(cert.SignatureKey) {
				return fmt.Errorf("bastion: %s's host certificate is not from the jumpgate host CA", t.Name)
			}
			checker := &gossh.CertChecker{Clock: s.cfg.Clock}
			var lastErr error
			for _, p := range []string{t.Name, host} {
				if lastErr = checker.CheckCert(p, cert); lastErr == nil {
					return nil
				}
			}
			return fmt.Errorf("bastion: %s's host certificate: %w", t.Name, lastErr)
		}, certHostAlgos, nil
	case strings.HasPrefix(hk, "SHA256:"):
		return func(_ string, _ net.Addr, key gossh.PublicKey) error {
			if c, ok := key.(*gossh.Certificate); ok {
				key = c.Key
			}
			if subtle.ConstantTimeCompare([]byte(gossh.FingerprintSHA256(key)), []byte(hk)) != 1 {
				return fmt.Errorf("bastion: %s's host key %s does not match the pinned %s", t.Name, gossh.FingerprintSHA256(key), hk)
			}
			return nil
		}, nil, nil
	default:
		pinned, _, _, _, err := gossh.ParseAuthorizedKey([]byte(hk))
		if err != nil {
			return nil, nil, fmt.Errorf("bastion: target %s host_key: %w", t.Name, err)
		}
		return func(_ string, _ net.Addr, key gossh.PublicKey) error {
			if c, ok := key.(*gossh.Certificate); ok {
				key = c.Key
			}
			if subtle.ConstantTimeCompare(key.Marshal(), pinned.Marshal()) != 1 {
				return fmt.Errorf("bastion: %s's host key %s does not match the pinned key", t.Name, gossh.FingerprintSHA256(key))
			}
			return nil
		}, []string{pinned.Type()}, nil
	}
}

// handleGlobal answers global requests on the inner connection: keepalives
// are answered here, remote forwarding goes upstream only when a role
// allows it.
func (ic *innerConn) handleGlobal(reqs <-chan *gossh.Request) {
	for r := range reqs {
		switch r.Type {
		case "tcpip-forward", "cancel-tcpip-forward":
			if !ic.access.Allow.RemoteForwarding || ic.up == nil {
				ic.s.auditRefusal(ic.u, ic.t.Name, "remote forwarding (-R) is not allowed", r.Type)
				_ = r.Reply(false, nil)
				continue
			}
			ok, payload, err := ic.up.SendRequest(r.Type, r.WantReply, r.Payload)
			_ = r.Reply(ok && err == nil, payload)
		default:
			// keepalive@openssh.com and friends: a failure reply is what
			// OpenSSH expects for requests it does not implement.
			_ = r.Reply(false, nil)
		}
	}
}

// startReverseChannels relays channels the target opens towards the user
// (agent, X11, remote forwards) when a role allows them.
func (ic *innerConn) startReverseChannels() {
	kinds := map[string]bool{
		"auth-agent@openssh.com": ic.access.Allow.AgentForwarding,
		"x11":                    ic.access.Allow.X11Forwarding,
		"forwarded-tcpip":        ic.access.Allow.RemoteForwarding,
	}
	for kind, allowed := range kinds {
		in := ic.up.HandleChannelOpen(kind)
		if in == nil {
			continue
		}
		ic.wg.Add(1)
		go func() {
			defer ic.wg.Done()
			for nc := range in {
				if !allowed {
					nc.Reject(gossh.Prohibited, "not allowed by jumpgate policy")
					continue
				}
				down, dreqs, err := ic.sc.OpenChannel(kind, nc.ExtraData())
				if err != nil {
					nc.Reject(gossh.ConnectionFailed, err.Error())
					continue
				}
				go gossh.DiscardRequests(dreqs)
				upCh, ureqs, err := nc.Accept()
				if err != nil {
					down.Close()
					continue
				}
				go gossh.DiscardRequests(ureqs)
				ic.wg.Add(1)
				go func() {
					defer ic.wg.Done()
					_, _ = relay.Pipe(ic.ctx, upCh, down)
				}()
			}
		}()
	}
}

// forward serves `ssh -L` through a recorded target (a direct-tcpip channel
// inside the inner session): relayed from the target when policy allows
// port forwarding, and audited.
func (ic *innerConn) forward(nc gossh.NewChannel) {
	var d directTCPIP
	if err := gossh.Unmarshal(nc.ExtraData(), &d); err != nil {
		nc.Reject(gossh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if !ic.access.Allow.PortForwarding {
		ic.s.auditRefusal(ic.u, ic.t.Name, "port forwarding through a recorded target is not allowed", fmt.Sprintf("direct-tcpip %s:%d", d.DestAddr, d.DestPort))
		nc.Reject(gossh.Prohibited, "jumpgate: port forwarding is not allowed on this target")
		return
	}
	if ic.up == nil {
		nc.Reject(gossh.ConnectionFailed, "jumpgate: target unreachable")
		return
	}
	upCh, ureqs, err := ic.up.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		nc.Reject(gossh.ConnectionFailed, err.Error())
		return
	}
	go gossh.DiscardRequests(ureqs)
	ch, reqs, err := nc.Accept()
	if err != nil {
		upCh.Close()
		return
	}
	go gossh.DiscardRequests(reqs)
	n, _ := relay.Pipe(ic.ctx, ch, upCh)
	if _, err := ic.s.cfg.Audit.Emit(context.WithoutCancel(ic.ctx), audit.Event{Type: audit.ForwardEnd, User: ic.u.Name, Target: ic.t.Name, Source: ic.u.Source,
		Details: map[string]any{"kind": "port-forward", "dest": net.JoinHostPort(d.DestAddr, fmt.Sprint(d.DestPort)), "bytes_in": n.AtoB, "bytes_out": n.BtoA, "login": ic.login}}); err != nil {
		ic.s.log.Error("audit forward", "err", err)
	}
}
