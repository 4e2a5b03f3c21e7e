package bastion

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/relay"
	"github.com/jumpgate/jumpgate/storage"
)

// directTCPIP is the payload of a direct-tcpip channel open (RFC 4254 7.2).
type directTCPIP struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// refusal is a reason to refuse a channel, with the message the user sees.
type refusal struct {
	code    gossh.RejectionReason
	message string
	reason  string
}

// resolveTarget maps a requested host and port onto the inventory. Only a
// configured target name reaches anything: IP literals in any notation,
// localhost and DNS names that are not target names are refused, so the
// bastion is never an open relay.
func resolveTarget(targets []config.Target, host string, port uint32) (config.Target, *refusal) {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" || len(name) > 253 {
		return config.Target{}, &refusal{gossh.Prohibited, "unknown target", "unknown_target"}
	}
	for _, t := range targets {
		if t.Name != name {
			continue
		}
		if !portAllowed(t, port) {
			return config.Target{}, &refusal{gossh.Prohibited, fmt.Sprintf("target %s does not take port %d", t.Name, port), "port_not_allowed"}
		}
		return t, nil
	}
	return config.Target{}, &refusal{gossh.Prohibited, "unknown target (only configured target names can be reached)", "unknown_target"}
}

// portAllowed lists the ports a channel to each kind may name.
func portAllowed(t config.Target, port uint32) bool {
	addrPort, _ := strconv.Atoi(t.Port())
	switch t.Kind {
	case config.KindSSH, config.KindLocal:
		return port == 22 || (addrPort != 0 && port == uint32(addrPort))
	case config.KindPostgres:
		return port == 5432 || (addrPort != 0 && port == uint32(addrPort))
	case config.KindKubernetes:
		return port == 443
	}
	return false
}

func policyTarget(t config.Target) policy.Target {
	return policy.Target{Name: t.Name, Kind: t.Kind, Labels: t.Labels}
}

func (s *Server) handleDirectTCPIP(srv *gliderssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, gctx gliderssh.Context) {
	st := stateOf(gctx)
	u := userOf(gctx, conn)
	if st == nil || u == nil {
		nc.Reject(gossh.Prohibited, "not authenticated")
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	var d directTCPIP
	if err := gossh.Unmarshal(nc.ExtraData(), &d); err != nil {
		s.log.Info("malformed direct-tcpip request", "user", u.Name, "err", err)
		nc.Reject(gossh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	t, ref := resolveTarget(s.cfg.Targets(), d.DestAddr, d.DestPort)
	u = s.withGrants(st.ctx, u)
	if ref == nil {
		if a := s.cfg.Policy.Current().AccessTo(u.Identity(), policyTarget(t)); !a.Allowed {
			ref = &refusal{gossh.Prohibited, "you have no access to " + t.Name, "no_access"}
		}
	}
	if ref == nil && s.draining.Load() {
		ref = &refusal{gossh.ResourceShortage, "the bastion is shutting down; reconnect", "draining"}
	}
	if ref != nil {
		s.log.Info("channel refused", "user", u.Name, "dest", net.JoinHostPort(d.DestAddr, strconv.Itoa(int(d.DestPort))), "reason", ref.reason)
		if _, err := s.cfg.Audit.Emit(st.ctx, audit.Event{Type: audit.AuthFailed, User: u.Name, Source: st.remote, Target: t.Name, Details: map[string]any{
			"reason": ref.reason, "service": "ssh", "dest_host": d.DestAddr, "dest_port": d.DestPort,
		}}); err != nil {
			s.log.Error("audit refusal", "err", err)
		}
		nc.Reject(ref.code, "jumpgate: "+ref.message)
		return
	}
	ctx := st.ctx
	switch {
	case t.Kind == config.KindSSH && !t.Recorded():
		s.passthrough(ctx, u, t, nc)
	case t.Kind == config.KindSSH, t.Kind == config.KindLocal:
		s.terminate(ctx, u, t, nc)
	default:
		f := s.cfg.Forwarders[t.Kind]
		if f == nil {
			nc.Reject(gossh.ConnectionFailed, "jumpgate: "+t.Kind+" targets are not served by this bastion")
			return
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		go gossh.DiscardRequests(reqs)
		s.metricStart(t.Kind)
		defer s.metricEnd(t.Kind)
		cc := &countingChannel{Channel: ch}
		defer func() {
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.BytesForwarded(t.Kind, cc.n.Load())
			}
		}()
		fs := forwarders.Session{ID: newID("s"), User: u.Name, Groups: u.Groups, Roles: u.Roles, Grants: u.Grants, Source: u.Source}
		start := s.cfg.Clock()
		err = f.Serve(ctx, cc, fs, t)
		if err != nil {
			s.log.Info("forwarder ended", "user", u.Name, "target", t.Name, "err", err)
		}
		ch.Close()
		// The forwarder's session ends in the audit log with its cause
		// (the client left, the target died, the gate ended it).
		details := map[string]any{"kind": t.Kind, "bytes": cc.n.Load(), "duration": s.cfg.Clock().Sub(start).Round(time.Millisecond).String()}
		if err != nil {
			details["error"] = err.Error()
		}
		if _, aerr := s.cfg.Audit.Emit(context.WithoutCancel(ctx), audit.Event{Type: audit.ForwardEnd, User: u.Name, Target: t.Name, Session: fs.ID, Source: u.Source, Details: details}); aerr != nil {
			s.log.Error("audit forward end", "err", aerr)
		}
	}
}

func (s *Server) metricStart(kind string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.SessionStarted(kind)
	}
}

func (s *Server) metricEnd(kind string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.SessionEnded(kind)
	}
}

// passthrough relays bytes to an SSH target without terminating the inner
// session; it is audited as a forward with its byte counts.
func (s *Server) passthrough(ctx context.Context, u *User, t config.Target, nc gossh.NewChannel) {
	up, err := s.cfg.Dial(ctx, "tcp", t.Address)
	if err != nil {
		s.log.Warn("target unreachable", "target", t.Name, "err", err)
		nc.Reject(gossh.ConnectionFailed, "jumpgate: target "+t.Name+" is unreachable")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	go gossh.DiscardRequests(reqs)
	id := newID("f")
	start := s.cfg.Clock()
	sess := storage.Session{ID: id, User: u.Name, Target: t.Name, Kind: "forward", Start: start.UTC(), Status: storage.SessionRunning, Source: u.Source, Replica: s.cfg.Replica}
	if _, err := s.cfg.Audit.Emit(ctx, audit.Event{Type: audit.SessionStart, User: u.Name, Target: t.Name, Session: id, Source: u.Source,
		Details: map[string]any{"kind": "forward", "address": t.Address, "recorded": false}}); err != nil {
		// Fail closed: nothing passes that is not in the audit log.
		ch.Close()
		up.Close()
		return
	}
	if s.cfg.Sessions != nil {
		_ = s.cfg.Sessions.PutSession(ctx, sess)
	}
	s.metricStart("forward")
	n, perr := relay.Pipe(ctx, ch, up.(relay.Stream))
	s.metricEnd("forward")
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.BytesForwarded("ssh", n.AtoB+n.BtoA)
	}
	sess.End, sess.Status, sess.Bytes = s.cfg.Clock().UTC(), storage.SessionEnded, n.AtoB+n.BtoA
	if s.cfg.Sessions != nil {
		_ = s.cfg.Sessions.PutSession(context.WithoutCancel(ctx), sess)
	}
	details := map[string]any{"bytes_in": n.AtoB, "bytes_out": n.BtoA, "duration": sess.End.Sub(start).String(), "kind": "forward"}
	if perr != nil {
		details["error"] = perr.Error()
	}
	if _, err := s.cfg.Audit.Emit(context.WithoutCancel(ctx), audit.Event{Type: audit.ForwardEnd, User: u.Name, Target: t.Name, Session: id, Source: u.Source, Details: details}); err != nil {
		s.log.Error("audit forward end", "err", err)
	}
}

// countingChannel counts the bytes a forwarder moves through a channel, for
// the bytes-forwarded metric of its kind.
type countingChannel struct {
	gossh.Channel
	n atomic.Int64
}

func (c *countingChannel) Read(p []byte) (int, error) {
	n, err := c.Channel.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingChannel) Write(p []byte) (int, error) {
	n, err := c.Channel.Write(p)
	c.n.Add(int64(n))
	return n, err
}
