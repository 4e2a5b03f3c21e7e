package bastion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/storage"
)

// Wire payloads of session requests (RFC 4254 section 6).
type ptyReq struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

type windowChange struct {
	Cols, Rows    uint32
	Width, Height uint32
}

type envReq struct{ Name, Value string }

type execReq struct{ Command string }

type subsystemReq struct{ Name string }

type exitStatus struct{ Status uint32 }

// envAllowed is the environment a user may pass to a target, as OpenSSH's
// default AcceptEnv: locale and time zone only.
func envAllowed(name string) bool {
	return name == "LANG" || strings.HasPrefix(name, "LC_") || name == "TZ" || name == "COLORTERM"
}

// maxExecRecord bounds what is kept of a non-interactive session's streams
// (scp, rsync, piped data); the byte counts are always complete.
const maxExecRecord = 4 << 20

// sess is one session channel of an inner connection.
type sess struct {
	ic   *innerConn
	id   string
	ch   gossh.Channel
	up   gossh.Channel
	log  func(msg string, args ...any)
	kind string // shell, exec, subsystem
	cmd  string

	mu        sync.Mutex
	pty       *ptyReq
	rec       *recorder.Writer
	recFile   string
	recIn     int64
	recOut    int64
	started   time.Time
	bytesIn   int64
	bytesOut  int64
	endReason string
	exit      *gossh.Request
	lines     *lineGate
	began     bool
}

// session relays one session channel to the target, recording and
// filtering it.
func (ic *innerConn) session(nc gossh.NewChannel) {
	s := ic.s
	if ic.up == nil {
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			for r := range reqs {
				_ = r.Reply(r.Type == "shell" || r.Type == "exec" || r.Type == "pty-req" || r.Type == "env", nil)
				if r.Type == "shell" || r.Type == "exec" || r.Type == "subsystem" {
					fmt.Fprintf(ch.Stderr(), "jumpgate: target %s is unreachable right now; try again later\r\n", ic.t.Name)
					_, _ = ch.SendRequest("exit-status", false, gossh.Marshal(exitStatus{255}))
					ch.Close()
				}
			}
		}()
		return
	}
	up, upReqs, err := ic.up.OpenChannel("session", nil)
	if err != nil {
		nc.Reject(gossh.ConnectionFailed, "jumpgate: the target refused the session")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	ss := &sess{ic: ic, id: newID("s"), ch: ch, up: up}
	ss.log = func(msg string, args ...any) {
		s.log.Info(msg, append([]any{"session", ss.id, "user", ic.u.Name, "target", ic.t.Name}, args...)...)
	}
	ctx, cancel := context.WithCancelCause(ic.ctx)
	defer cancel(nil)
	defer s.register(ss.id, ic.u.Name, ic.t.Name, cancel, ss.warn)()
	// When the gate ends the session (revocation, an access window closing,
	// an approver, shutdown), the user is told why before the channel
	// closes: the message, exit status 255, EOF, close — in that order.
	ended := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(ended)
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, errConnClosed) && !errors.Is(cause, context.Canceled) {
			ss.setEnd(cause.Error())
			ss.log("session ended by the gate", "cause", cause)
			msg := []byte("\r\njumpgate: session ended: " + userReason(cause) + "\r\n")
			ss.mu.Lock()
			interactive := ss.pty != nil
			ss.mu.Unlock()
			var w io.Writer = ch.Stderr()
			if interactive {
				w = ch
			}
			_, _ = w.Write(msg)
			_, _ = ch.SendRequest("exit-status", false, gossh.Marshal(exitStatus{255}))
			_ = ch.CloseWrite()
		}
		ch.Close()
		up.Close()
	})
	defer func() {
		if stop() {
			close(ended)
		}
		<-ended
	}()

	var copiers sync.WaitGroup
	// Target → user: stdout and stderr, recorded.
	copiers.Add(2)
	go func() {
		defer copiers.Done()
		ss.copyOut(ctx, cancel, ch, up, false)
	}()
	go func() {
		defer copiers.Done()
		ss.copyOut(ctx, cancel, ch.Stderr(), up.Stderr(), true)
	}()
	outDone := make(chan struct{})
	go func() {
		copiers.Wait()
		// The target's EOF is passed on as it comes. Output that ends
		// because the target went away gets no EOF here, so that the
		// gate's message can still follow it.
		if !ic.upstreamLost() {
			_ = ch.CloseWrite()
		}
		close(outDone)
	}()
	// User → target: stdin, through the line gate when interactive.
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		ss.copyIn(ctx, cancel)
	}()
	// Target's requests: exit-status and exit-signal wait until all output
	// has been passed on, as OpenSSH orders them.
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		for r := range upReqs {
			switch r.Type {
			case "exit-status", "exit-signal":
				ss.mu.Lock()
				ss.exit = r
				ss.mu.Unlock()
				_ = r.Reply(true, nil)
			default:
				ok, _ := ch.SendRequest(r.Type, r.WantReply, r.Payload)
				_ = r.Reply(ok, nil)
			}
		}
	}()
	// User's requests.
	reqsDone := make(chan struct{})
	go func() {
		defer close(reqsDone)
		for r := range reqs {
			ss.request(ctx, cancel, r)
		}
	}()

	select {
	case <-upDone: // the target closed the channel
		<-outDone
		ss.mu.Lock()
		exit := ss.exit
		ss.mu.Unlock()
		if exit != nil {
			_, _ = ch.SendRequest(exit.Type, false, exit.Payload)
		} else if ic.upstreamLost() {
			// No exit status because the target went away: say so.
			cancel(errTargetDown)
			<-ended
		}
	case <-reqsDone: // the user closed the channel
	case <-ctx.Done():
		<-ended // the gate's message goes out before the close
	}
	ch.Close()
	up.Close()
	cancel(errConnClosed)
	<-outDone
	<-inDone
	<-reqsDone
	<-upDone
	ss.mu.Lock()
	gate := ss.lines
	ss.mu.Unlock()
	if gate != nil {
		gate.close()
	}
	ss.finish()
}

// upstreamProbe bounds how long upstreamLost waits for a target's answer;
// a target that answers later is taken as alive.
const upstreamProbe = 2 * time.Second

// upstreamLost reports whether the connection to the target is gone: a
// request on a dead connection fails at once, a live target answers.
func (ic *innerConn) upstreamLost() bool {
	select {
	case <-ic.upGone:
		return true
	default:
	}
	res := make(chan error, 1)
	// Returns when the target answers or the connection closes, which
	// terminate brings about before its ic.wg.Wait.
	ic.wg.Add(1)
	go func() {
		defer ic.wg.Done()
		_, _, err := ic.up.SendRequest("keepalive@openssh.com", true, nil)
		res <- err
	}()
	t := time.NewTimer(upstreamProbe)
	defer t.Stop()
	select {
	case err := <-res:
		return err != nil
	case <-ic.upGone:
		return true
	case <-t.C:
		return false
	}
}

func userReason(err error) string {
	switch {
	case errors.Is(err, errTargetDown):
		return "the connection to the target was lost"
	case errors.Is(err, errRecording):
		return "the recording could not be written (sessions are not allowed unrecorded)"
	default:
		return err.Error()
	}
}

var errRecording = errors.New("recording failed")

// warn shows the user a message from the gate without ending the session.
func (ss *sess) warn(msg string) {
	b := []byte("\r\njumpgate: " + msg + "\r\n")
	ss.mu.Lock()
	interactive := ss.pty != nil
	ss.mu.Unlock()
	if interactive {
		_ = ss.recordOut(b)
		_, _ = ss.ch.Write(b)
		return
	}
	_, _ = ss.ch.Stderr().Write(b)
}

func (ss *sess) setEnd(reason string) {
	ss.mu.Lock()
	if ss.endReason == "" {
		ss.endReason = reason
	}
	ss.mu.Unlock()
}

// copyOut copies target output to the user, recording it.
func (ss *sess) copyOut(ctx context.Context, cancel context.CancelCauseFunc, dst io.Writer, src io.Reader, stderr bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p := buf[:n]
			if rerr := ss.recordOut(p); rerr != nil {
				ss.log("recording write failed; ending session", "err", rerr)
				cancel(errRecording)
				return
			}
			if _, werr := dst.Write(p); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (ss *sess) recordOut(p []byte) error {
	ss.mu.Lock()
	ss.bytesOut += int64(len(p))
	rec, gate := ss.rec, ss.lines
	keep := ss.kind == "shell" || ss.pty != nil || ss.recOut < maxExecRecord
	if keep {
		ss.recOut += int64(len(p))
	}
	ss.mu.Unlock()
	if gate != nil {
		gate.output(p)
	}
	if rec != nil && keep {
		return rec.Output(p)
	}
	return nil
}

// copyIn copies user input to the target, through the line gate for
// interactive shells.
func (ss *sess) copyIn(ctx context.Context, cancel context.CancelCauseFunc) {
	buf := make([]byte, 32<<10)
	for {
		n, err := ss.ch.Read(buf)
		if n > 0 {
			p := buf[:n]
			ss.mu.Lock()
			ss.bytesIn += int64(len(p))
			gate := ss.lines
			ss.mu.Unlock()
			var werr error
			if gate != nil {
				werr = gate.input(ctx, p)
			} else {
				if rerr := ss.recordIn(p); rerr != nil {
					cancel(errRecording)
					return
				}
				_, werr = ss.up.Write(p)
			}
			if werr != nil {
				if errors.Is(werr, errRecording) {
					cancel(errRecording)
				}
				return
			}
		}
		if err != nil {
			_ = ss.up.CloseWrite()
			return
		}
	}
}

func (ss *sess) recordIn(p []byte) error {
	ss.mu.Lock()
	rec := ss.rec
	keep := ss.kind == "shell" || ss.pty != nil || ss.recIn < maxExecRecord
	if keep {
		ss.recIn += int64(len(p))
	}
	ss.mu.Unlock()
	if rec != nil && keep {
		return rec.Input(p)
	}
	return nil
}

// request handles one request from the user.
func (ss *sess) request(ctx context.Context, cancel context.CancelCauseFunc, r *gossh.Request) {
	ic := ss.ic
	switch r.Type {
	case "pty-req":
		var p ptyReq
		if err := gossh.Unmarshal(r.Payload, &p); err != nil || p.Cols > 10000 || p.Rows > 10000 {
			_ = r.Reply(false, nil)
			return
		}
		ss.mu.Lock()
		ss.pty = &p
		ss.mu.Unlock()
		ss.forward(r)
	case "window-change":
		var w windowChange
		if err := gossh.Unmarshal(r.Payload, &w); err == nil && w.Cols <= 10000 && w.Rows <= 10000 {
			ss.mu.Lock()
			rec, gate := ss.rec, ss.lines
			if ss.pty != nil {
				ss.pty.Cols, ss.pty.Rows = w.Cols, w.Rows
			}
			ss.mu.Unlock()
			if rec != nil {
				_ = rec.Resize(int(w.Cols), int(w.Rows))
			}
			if gate != nil {
				gate.resize(int(w.Cols), int(w.Rows))
			}
		}
		ss.forward(r)
	case "env":
		var e envReq
		if err := gossh.Unmarshal(r.Payload, &e); err != nil || !envAllowed(e.Name) {
			_ = r.Reply(false, nil)
			return
		}
		ss.forward(r)
	case "shell":
		if !ss.begin("shell", "") {
			_ = r.Reply(false, nil)
			return
		}
		if err := ss.startRecording(ctx); err != nil {
			ss.refuseStart(r, "the session cannot be recorded, so it cannot start")
			return
		}
		ss.mu.Lock()
		if ss.pty != nil {
			ss.lines = newLineGate(ss, int(ss.pty.Cols), int(ss.pty.Rows))
		}
		ss.mu.Unlock()
		ss.forward(r)
	case "exec":
		var e execReq
		if err := gossh.Unmarshal(r.Payload, &e); err != nil || !ss.begin("exec", e.Command) {
			_ = r.Reply(false, nil)
			return
		}
		d := ic.s.cfg.Policy.Current().CheckCommand(ic.u.Identity(), policyTarget(ic.t), e.Command)
		switch d.Action {
		case policy.ActionBlock:
			ss.blockExec(ctx, r, e.Command, d)
			return
		case policy.ActionReview:
			if !ss.holdExec(ctx, r, e.Command, d) {
				return
			}
		}
		if err := ss.startRecording(ctx); err != nil {
			ss.refuseStart(r, "the session cannot be recorded, so it cannot start")
			return
		}
		ss.forward(r)
	case "subsystem":
		var sub subsystemReq
		if err := gossh.Unmarshal(r.Payload, &sub); err != nil || sub.Name != "sftp" || !ss.begin("subsystem", sub.Name) {
			ss.log("subsystem refused", "subsystem", sub.Name)
			_ = r.Reply(false, nil)
			return
		}
		if err := ss.startRecording(ctx); err != nil {
			ss.refuseStart(r, "the session cannot be audited, so it cannot start")
			return
		}
		ss.forward(r)
	case "auth-agent-req@openssh.com":
		if !ic.access.Allow.AgentForwarding {
			ic.s.auditRefusal(ic.u, ic.t.Name, "agent forwarding is not allowed", r.Type)
			_ = r.Reply(false, nil)
			return
		}
		ss.forward(r)
	case "x11-req":
		if !ic.access.Allow.X11Forwarding {
			ic.s.auditRefusal(ic.u, ic.t.Name, "X11 forwarding is not allowed", r.Type)
			_ = r.Reply(false, nil)
			return
		}
		ss.forward(r)
	case "signal", "break", "eow@openssh.com", "keepalive@openssh.com":
		ss.forward(r)
	default:
		_ = r.Reply(false, nil)
	}
}

// begin marks the session's program as started; only one per channel.
func (ss *sess) begin(kind, cmd string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.began {
		return false
	}
	ss.began, ss.kind, ss.cmd = true, kind, cmd
	return true
}

func (ss *sess) forward(r *gossh.Request) {
	ok, err := ss.up.SendRequest(r.Type, r.WantReply, r.Payload)
	if r.WantReply {
		_ = r.Reply(ok && err == nil, nil)
	}
}

func (ss *sess) refuseStart(r *gossh.Request, msg string) {
	_ = r.Reply(true, nil)
	fmt.Fprintf(ss.ch.Stderr(), "jumpgate: %s\r\n", msg)
	_, _ = ss.ch.SendRequest("exit-status", false, gossh.Marshal(exitStatus{255}))
	ss.ch.Close()
}

// blockExec refuses a command: a message on stderr, exit status 126.
func (ss *sess) blockExec(ctx context.Context, r *gossh.Request, cmd string, d policy.Decision) {
	ic := ss.ic
	ss.log("command blocked", "command", cmd, "rule", d.Rule)
	if ic.s.cfg.Metrics != nil {
		ic.s.cfg.Metrics.Blocked("command")
	}
	if _, err := ic.s.cfg.Audit.Emit(ctx, audit.Event{Type: audit.CommandBlocked, User: ic.u.Name, Target: ic.t.Name, Session: ss.id, Source: ic.u.Source,
		Details: map[string]any{"command": cmd, "rule": d.Rule, "matched": d.Matched, "login": ic.login, "mode": "exec"}}); err != nil {
		ic.s.log.Error("audit command.blocked", "err", err)
	}
	_ = r.Reply(true, nil)
	fmt.Fprintf(ss.ch.Stderr(), "jumpgate: %s\r\n", d.Reason)
	_, _ = ss.ch.SendRequest("exit-status", false, gossh.Marshal(exitStatus{126}))
	_ = ss.ch.CloseWrite()
	ss.ch.Close()
}

// holdExec holds a command for approval. It reports whether the command may
// run; when it may not, the channel has been answered and closed.
func (ss *sess) holdExec(ctx context.Context, r *gossh.Request, cmd string, d policy.Decision) bool {
	ic := ss.ic
	q := ic.s.cfg.Approvals
	if q == nil {
		ss.blockExec(ctx, r, cmd, policy.Decision{Action: policy.ActionBlock, Rule: d.Rule, Reason: "command needs approval, and approvals are not configured"})
		return false
	}
	if ic.s.cfg.Metrics != nil {
		ic.s.cfg.Metrics.Held("command")
	}
	req, err := q.Create(ctx, storage.Request{Kind: storage.KindCommand, User: ic.u.Name, Groups: ic.u.Groups, Target: ic.t.Name,
		What: cmd, Reason: d.Reason, Session: ss.id}, ic.s.cfg.HoldTimeout)
	if err != nil {
		ss.blockExec(ctx, r, cmd, policy.Decision{Action: policy.ActionBlock, Rule: d.Rule, Reason: "command needs approval, but the request could not be recorded"})
		return false
	}
	fmt.Fprintf(ss.ch.Stderr(), "jumpgate: %s; waiting for approval, request ID %s (jumpgate approve %s)\r\n", d.Reason, req.ID, req.ID)
	ss.log("command held", "command", cmd, "request", req.ID)
	got, err := q.Wait(ctx, req.ID)
	if err == nil && got.Status == storage.StatusApproved {
		fmt.Fprintf(ss.ch.Stderr(), "jumpgate: request %s approved by %s\r\n", req.ID, got.DecidedBy)
		return true
	}
	why := "the request was not approved"
	switch {
	case err != nil:
		why = "the session ended while waiting"
	case got.Status == storage.StatusDenied:
		why = fmt.Sprintf("request %s denied by %s", req.ID, got.DecidedBy)
		if got.DecisionReason != "" {
			why += ": " + got.DecisionReason
		}
	case got.Status == storage.StatusExpired:
		why = fmt.Sprintf("request %s expired without a decision", req.ID)
	}
	_ = r.Reply(true, nil)
	fmt.Fprintf(ss.ch.Stderr(), "jumpgate: %s\r\n", why)
	_, _ = ss.ch.SendRequest("exit-status", false, gossh.Marshal(exitStatus{126}))
	_ = ss.ch.CloseWrite()
	ss.ch.Close()
	return false
}

// startRecording opens the recording and the session's index entry.
func (ss *sess) startRecording(ctx context.Context) error {
	ic := ss.ic
	s := ic.s
	now := s.cfg.Clock()
	ss.mu.Lock()
	pty, kind, cmd := ss.pty, ss.kind, ss.cmd
	ss.mu.Unlock()
	cols, rows := 80, 24
	env := map[string]string{}
	if pty != nil {
		cols, rows = int(pty.Cols), int(pty.Rows)
		env["TERM"] = pty.Term
	}
	if cols <= 0 {
		cols = 80
	}
	if rows <= 0 {
		rows = 24
	}
	file := now.UTC().Format("2006-01-02") + "/" + ss.id + ".cast"
	var rec *recorder.Writer
	if kind != "subsystem" {
		var err error
		rec, err = s.recordings().Create(ctx, file, recorder.Header{
			Version: 2, Width: cols, Height: rows, Timestamp: now.Unix(), Env: env,
			Title: fmt.Sprintf("%s@%s (%s)", ic.login, ic.t.Name, ic.u.Name), Command: cmd,
		}, s.recorderOptions())
		if err != nil {
			s.log.Error("cannot create recording", "session", ss.id, "err", err)
			if s.cfg.FailClosed {
				return err
			}
			rec, file = nil, ""
		}
	} else {
		file = ""
	}
	sessRec := storage.Session{ID: ss.id, User: ic.u.Name, Login: ic.login, Target: ic.t.Name, Kind: kind, Command: cmd,
		Start: now.UTC(), Status: storage.SessionRunning, Recording: file, Replica: s.cfg.Replica, Source: ic.u.Source}
	if _, err := s.cfg.Audit.Emit(ctx, audit.Event{Type: audit.SessionStart, User: ic.u.Name, Target: ic.t.Name, Session: ss.id, Source: ic.u.Source,
		Details: map[string]any{"login": ic.login, "kind": kind, "command": cmd, "recording": file, "pty": pty != nil, "upstream_key_id": ic.u.Name + "/" + ic.id}}); err != nil {
		if rec != nil {
			_, _ = rec.Close()
		}
		return err
	}
	if kind == "exec" {
		if _, err := s.cfg.Audit.Emit(ctx, audit.Event{Type: audit.Exec, User: ic.u.Name, Target: ic.t.Name, Session: ss.id, Source: ic.u.Source,
			Details: map[string]any{"command": cmd, "login": ic.login}}); err != nil {
			if rec != nil {
				_, _ = rec.Close()
			}
			return err
		}
	}
	if s.cfg.Sessions != nil {
		if err := s.cfg.Sessions.PutSession(ctx, sessRec); err != nil {
			s.log.Error("session index", "err", err)
		}
	}
	ss.mu.Lock()
	ss.rec, ss.recFile, ss.started = rec, file, now
	ss.mu.Unlock()
	s.metricStart(kind)
	return nil
}

// finish closes the recording, signs it and ends the session in the index
// and the audit log.
func (ss *sess) finish() {
	ic := ss.ic
	s := ic.s
	ss.mu.Lock()
	rec, file, started, kind := ss.rec, ss.recFile, ss.started, ss.kind
	in, out, reason, exit := ss.bytesIn, ss.bytesOut, ss.endReason, ss.exit
	ss.mu.Unlock()
	if started.IsZero() {
		return // never started (refused or closed early)
	}
	s.metricEnd(kind)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.BytesForwarded("ssh", in+out)
	}
	ctx := context.WithoutCancel(ic.ctx)
	details := map[string]any{"bytes_in": in, "bytes_out": out, "login": ic.login, "kind": kind, "recording": file}
	end := s.cfg.Clock()
	status := storage.SessionEnded
	var sum recorder.Summary
	if rec != nil {
		var err error
		sum, err = rec.Close()
		if err != nil {
			s.log.Error("recording close failed", "session", ss.id, "err", err)
			details["recording_error"] = err.Error()
		}
		if sum.SHA256 != "" {
			sig, err := recorder.Sign(s.cfg.AuditKey, sum.SHA256, ss.id)
			if err != nil {
				s.log.Error("recording signature", "session", ss.id, "err", err)
			}
			details["sha256"], details["signature"] = sum.SHA256, sig
			details["recording_bytes"] = sum.Bytes
		}
	}
	if exit != nil {
		if exit.Type == "exit-status" {
			var st exitStatus
			if gossh.Unmarshal(exit.Payload, &st) == nil {
				details["exit_status"] = st.Status
			}
		} else {
			var sig struct {
				Signal     string
				CoreDumped bool
				Msg, Lang  string
			}
			if gossh.Unmarshal(exit.Payload, &sig) == nil {
				details["exit_signal"] = sig.Signal
			}
		}
	}
	if reason != "" {
		details["end_reason"] = reason
	}
	details["duration"] = end.Sub(started).Round(time.Millisecond).String()
	sessRec := storage.Session{ID: ss.id, User: ic.u.Name, Login: ic.login, Target: ic.t.Name, Kind: kind, Command: ss.cmd,
		Start: started.UTC(), End: end.UTC(), Bytes: in + out, Status: status, Recording: file,
		SHA256: sum.SHA256, Replica: s.cfg.Replica, EndReason: reason, Source: ic.u.Source}
	if sig, ok := details["signature"].(string); ok {
		sessRec.Signature = sig
	}
	if s.cfg.Sessions != nil {
		if err := s.cfg.Sessions.PutSession(ctx, sessRec); err != nil {
			s.log.Error("session index", "err", err)
		}
	}
	if _, err := s.cfg.Audit.Emit(ctx, audit.Event{Type: audit.SessionEnd, User: ic.u.Name, Target: ic.t.Name, Session: ss.id, Source: ic.u.Source, Details: details}); err != nil {
		s.log.Error("audit session.end", "err", err)
	}
}
