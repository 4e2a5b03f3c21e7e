package bastion

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/termline"
)

// lineGate applies command rules to interactive shells: it holds each Enter
// the user types until the line shown on the terminal (read from a terminal
// emulator fed with the session's output) has been checked against policy.
type lineGate struct {
	ss *sess
	tl *termline.Termline

	mu      sync.Mutex
	changed chan struct{}
	lastOut time.Time
	// pending is output not yet fed to the emulator. The emulator is only
	// consulted when the user types, so output is fed lazily, and only its
	// last maxPending bytes: a large `cat` costs a copy, not an emulation.
	pending []byte
	dropped bool

	// typed is what was forwarded since the last Enter or Clear. When it
	// is plain text (no editing keys), it is what the shell's buffer holds
	// even if the echo lags behind, and it is checked too.
	typed []byte
}

// maxTyped bounds typed; past it only the display is checked.
const maxTyped = 64 << 10

// echoWaits is how many more settle periods the gate waits for the echo of
// plain typed text when the line shows nothing yet.
const echoWaits = 3

// maxPending bounds the output kept for the emulator between keystrokes.
const maxPending = 256 << 10

// Settling: after forwarding keystrokes, the gate waits for their echo and
// then for the output to pause before it reads the line.
const (
	settleQuiet = 15 * time.Millisecond
	settleMax   = 300 * time.Millisecond
)

func newLineGate(ss *sess, cols, rows int) *lineGate {
	if cols <= 0 {
		cols = 80
	}
	if rows <= 0 {
		rows = 24
	}
	return &lineGate{ss: ss, tl: termline.New(cols, rows), changed: make(chan struct{})}
}

func (g *lineGate) output(p []byte) {
	g.mu.Lock()
	g.pending = append(g.pending, p...)
	// Trim only when twice over the bound, so the copy is amortized.
	if len(g.pending) > 2*maxPending {
		g.pending = append(g.pending[:0], g.pending[len(g.pending)-maxPending:]...)
		g.dropped = true
	}
	g.lastOut = time.Now()
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

func (g *lineGate) resize(cols, rows int) {
	g.feed()
	g.tl.Resize(cols, rows)
}

// feed brings the emulator up to date with the output so far.
func (g *lineGate) feed() {
	g.mu.Lock()
	p, dropped := g.pending, g.dropped
	g.pending, g.dropped = nil, false
	g.mu.Unlock()
	if len(p) > maxPending {
		p, dropped = p[len(p)-maxPending:], true
	}
	if dropped {
		// The head was dropped: start from a clean screen; the tail
		// (and the shell's next prompt) redraws what matters.
		g.tl.Output([]byte("\x1bc"))
	}
	if len(p) > 0 {
		g.tl.Output(p)
	}
}

func (g *lineGate) close() { _ = g.tl.Close() }

// settle waits until output has arrived after since and then paused, or
// settleMax has passed.
func (g *lineGate) settle(ctx context.Context, since time.Time) {
	deadline := since.Add(settleMax)
	for {
		g.mu.Lock()
		last, ch := g.lastOut, g.changed
		g.mu.Unlock()
		now := time.Now()
		if now.After(deadline) {
			return
		}
		wait := deadline.Sub(now)
		if last.After(since) {
			if q := now.Sub(last); q >= settleQuiet {
				return
			} else if settleQuiet-q < wait {
				wait = settleQuiet - q
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

func (g *lineGate) send(p []byte) error {
	if err := g.ss.recordIn(p); err != nil {
		return errRecording
	}
	_, err := g.ss.up.Write(p)
	return err
}

// input passes typed bytes to the target, deciding each Enter.
func (g *lineGate) input(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		g.feed()
		ev := g.tl.Input(p)
		var sent time.Time
		if ev.N > 0 {
			sent = time.Now()
			if len(g.typed)+ev.N <= maxTyped {
				g.typed = append(g.typed, p[:ev.N]...)
			} else {
				g.typed = append(g.typed[:0], 0x1b) // not plain any more
			}
			if err := g.send(p[:ev.N]); err != nil {
				return err
			}
		}
		if !ev.Enter {
			return nil
		}
		if !sent.IsZero() {
			g.settle(ctx, sent)
		}
		g.feed()
		line, ok := g.tl.Line()
		if typed, plain := plainTyped(g.typed); plain && !g.tl.AltScreen() && !g.tl.Continued() && strings.TrimSpace(typed) != "" {
			// The echo may lag behind fast typing or a paste: decide on
			// whichever of the display and the typed text a rule treats
			// more strictly. Nothing shown at all may also mean echo is
			// off (a password prompt): give the echo a little longer, and
			// if still nothing shows, leave the typed text alone so that
			// a password never reaches a rule or the audit log.
			for i := 0; i < echoWaits && ok && strings.TrimSpace(line) == ""; i++ {
				g.settle(ctx, time.Now())
				g.feed()
				line, ok = g.tl.Line()
			}
			if ok && strings.TrimSpace(line) == "" {
				typed = ""
			}
			pol := g.ss.ic.s.cfg.Policy.Current()
			id, tg := g.ss.ic.u.Identity(), policyTarget(g.ss.ic.t)
			if typed != "" && (!ok || pol.CheckCommand(id, tg, typed).Action > pol.CheckCommand(id, tg, line).Action) {
				line, ok = typed, true
			}
		}
		if ok && strings.TrimSpace(line) != "" {
			allowed, err := g.decide(ctx, line)
			if err != nil {
				return err
			}
			if !allowed {
				// Drop the line and whatever was typed after it.
				g.typed = g.typed[:0]
				return g.send(g.tl.Clear())
			}
		}
		g.typed = g.typed[:0]
		g.tl.Accept()
		enterAt := time.Now()
		if err := g.send(p[ev.N : ev.N+1]); err != nil {
			return err
		}
		p = p[ev.N+1:]
		if len(p) > 0 {
			g.settle(ctx, enterAt)
		}
	}
	return nil
}

// decide applies command rules to an interactive line.
func (g *lineGate) decide(ctx context.Context, line string) (bool, error) {
	ss := g.ss
	ic := ss.ic
	s := ic.s
	d := s.cfg.Policy.Current().CheckCommand(ic.u.Identity(), policyTarget(ic.t), line)
	switch d.Action {
	case policy.ActionBlock:
		ss.log("interactive command blocked", "line", line, "rule", d.Rule)
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.Blocked("command")
		}
		if _, err := s.cfg.Audit.Emit(ctx, audit.Event{Type: audit.CommandBlocked, User: ic.u.Name, Target: ic.t.Name, Session: ss.id, Source: ic.u.Source,
			Details: map[string]any{"command": line, "rule": d.Rule, "matched": d.Matched, "login": ic.login, "mode": "interactive", "offset": g.offset()}}); err != nil {
			return false, err
		}
		g.tell(d.Reason + "; the line was not run")
		return false, nil
	case policy.ActionReview:
		q := s.cfg.Approvals
		if q == nil {
			g.tell("command needs approval, and approvals are not configured; the line was not run")
			return false, nil
		}
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.Held("command")
		}
		req, err := q.Create(ctx, storage.Request{Kind: storage.KindCommand, User: ic.u.Name, Groups: ic.u.Groups, Target: ic.t.Name, What: line, Reason: d.Reason, Session: ss.id}, s.cfg.HoldTimeout)
		if err != nil {
			return false, err
		}
		g.tell(fmt.Sprintf("%s; waiting for approval, request ID %s", d.Reason, req.ID))
		got, err := q.Wait(ctx, req.ID)
		if err != nil {
			return false, err
		}
		if got.Status == storage.StatusApproved {
			g.tell(fmt.Sprintf("request %s approved by %s", req.ID, got.DecidedBy))
			return true, nil
		}
		g.tell(fmt.Sprintf("request %s %s; the line was not run", req.ID, got.Status))
		return false, nil
	}
	return true, nil
}

// tell shows a message on the user's terminal (and in the recording).
func (g *lineGate) tell(msg string) {
	b := []byte("\r\njumpgate: " + msg + "\r\n")
	_ = g.ss.recordOut(b)
	_, _ = g.ss.ch.Write(b)
}

func (g *lineGate) offset() float64 {
	g.ss.mu.Lock()
	defer g.ss.mu.Unlock()
	if g.ss.started.IsZero() {
		return 0
	}
	return time.Since(g.ss.started).Seconds()
}

// plainTyped returns typed as text when it holds no editing keys, escape
// sequences or control characters (bracketed-paste markers aside), so that
// it equals what a shell's line buffer holds.
func plainTyped(typed []byte) (string, bool) {
	t := strings.ReplaceAll(strings.ReplaceAll(string(typed), "\x1b[200~", ""), "\x1b[201~", "")
	for i := 0; i < len(t); i++ {
		if c := t[i]; c < 0x20 || c == 0x7f {
			return "", false
		}
	}
	return t, true
}
