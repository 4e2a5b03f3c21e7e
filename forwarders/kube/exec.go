package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream/spdy"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
)

// SessionKindExec and SessionKindAttach are the session kinds of a
// recorded pod exec and pod attach.
const (
	SessionKindExec   = "kube-exec"
	SessionKindAttach = "kube-attach"
)

// ErrNotRecordable is why an exec cannot be recorded: it speaks neither a
// WebSocket channel.k8s.io protocol nor SPDY/3.1.
var ErrNotRecordable = errors.New("kube: exec stream cannot be recorded")

// execSession is one pod exec or attach (the same stream protocol): its
// recording and its session events.
type execSession struct {
	h       *handler
	verb    string // "exec" or "attach", as in `kubectl exec`
	kind    string // SessionKindExec or SessionKindAttach
	id      string
	cmd     string
	what    string
	file    string // relative to RecordingsDir; "" when not recorded
	rec     *recorder.Writer
	started time.Time

	mu        sync.Mutex
	in, out   int64
	recErr    error
	demuxUp   *wsDemux // client → API server
	demuxDown *wsDemux // API server → client
	spdy      *spdyStreams
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "k-" + hex.EncodeToString(b[:])
}

// startExec opens the recording of an exec or attach upgrade before
// anything is sent upstream. With FailClosed, one that cannot be recorded
// is refused (the error); without, it goes on unrecorded.
func (h *handler) startExec(r *http.Request, ri RequestInfo) (*execSession, error) {
	cfg := &h.f.cfg
	now := cfg.Clock()
	q := r.URL.Query()
	es := &execSession{h: h, verb: "exec", kind: SessionKindExec, id: cfg.NewID(), started: now,
		what: fmt.Sprintf("pod %s -n %s", ri.Name, ri.Namespace)}
	if ri.Subresource == "attach" {
		es.verb, es.kind = "attach", SessionKindAttach
	} else {
		es.cmd = execCommand(q)
	}
	if c := q.Get("container"); c != "" {
		es.what += " -c " + c
	}
	var err error
	switch {
	case !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && !isSPDY(r.Header.Get("Upgrade")):
		err = fmt.Errorf("%w: %q", ErrNotRecordable, r.Header.Get("Upgrade"))
	case cfg.RecordingsDir == "" && cfg.Recordings == nil:
		err = fmt.Errorf("%w: no recordings directory", ErrNotRecordable)
	default:
		file := now.UTC().Format("2006-01-02") + "/" + es.id + ".cast"
		env := map[string]string{}
		if q.Get("tty") == "true" || q.Get("tty") == "1" {
			env["TERM"] = "xterm"
		}
		es.rec, err = h.f.recordings().Create(r.Context(), file, recorder.Header{
			Width: 80, Height: 24, Timestamp: now.Unix(), Command: es.cmd, Env: env,
			Title: fmt.Sprintf("kubectl %s %s on %s (%s)", es.verb, es.what, h.t.Name, h.s.User),
		}, recorder.Options{Clock: cfg.Clock})
		if err == nil {
			es.file = file
		}
	}
	if err != nil {
		if cfg.FailClosed {
			return nil, err
		}
		h.log.Warn(es.verb+" not recorded", "err", err)
	}
	return es, nil
}

// abandon removes the recording of an exec the API server refused.
func (es *execSession) abandon() {
	if es.rec == nil {
		return
	}
	_, _ = es.rec.Close()
	_ = es.h.f.recordings().Remove(context.Background(), es.file)
	es.rec, es.file = nil, ""
}

func isSPDY(upgrade string) bool { return strings.EqualFold(upgrade, "SPDY/3.1") }

// tap is called on the API server's 101: it picks the protocol it
// switched to, announces the session and returns the readers that record
// it. WebSocket bytes are observed as they pass (the recording stops if
// the framing cannot be followed); SPDY frames are passed on only once
// parsed and recorded, and an exec whose frames cannot be followed is
// closed (spdyGate).
func (es *execSession) tap(resp *http.Response, sw *switched) (up, down func(io.Reader) io.Reader) {
	proto := resp.Header.Get("Sec-WebSocket-Protocol")
	spdyExec := isSPDY(resp.Header.Get("Upgrade"))
	if spdyExec {
		proto = resp.Header.Get("X-Stream-Protocol-Version")
	}
	if es.rec != nil {
		switch {
		case spdyExec:
			es.spdy = newSPDYStreams()
			gate := func(d *spdyDemux, n *int64) func(io.Reader) io.Reader {
				return func(r io.Reader) io.Reader {
					return &spdyGate{r: r, d: d, mu: &es.mu, count: n, abort: func(err error) { es.abortSPDY(sw, err) }}
				}
			}
			up = gate(newSPDYDemux(es.spdy, es.fromClientSPDY), &es.in)
			down = gate(newSPDYDemux(es.spdy, es.fromServerSPDY), &es.out)
		case !strings.HasSuffix(proto, "channel.k8s.io") || resp.Header.Get("Sec-WebSocket-Extensions") != "":
			es.recErr = fmt.Errorf("%w: protocol %q", ErrNotRecordable, proto)
		default:
			b64 := strings.Contains(proto, "base64")
			es.demuxUp = &wsDemux{base64: b64, emit: es.fromClient}
			es.demuxDown = &wsDemux{base64: b64, emit: es.fromServer}
		}
	}
	h := es.h
	ctx := context.WithoutCancel(resp.Request.Context())
	h.emitAs(ctx, audit.SessionStart, es.id, map[string]any{"kind": es.kind, "command": es.cmd, "pod": es.what,
		"recording": es.file, "protocol": proto, "channel": h.s.ID})
	if h.f.cfg.Sessions != nil {
		if err := h.f.cfg.Sessions.PutSession(ctx, es.index(time.Time{}, "", "")); err != nil {
			h.log.Error("session index", "err", err)
		}
	}
	if up == nil {
		up = observe(func(p []byte) { es.feed(es.demuxUp, p, &es.in) })
		down = observe(func(p []byte) { es.feed(es.demuxDown, p, &es.out) })
	}
	return up, down
}

// abortSPDY closes a SPDY exec whose frames cannot be followed or
// recorded: the client is told on its error stream (when it has opened
// one) and the relay ends. The cause is logged and lands in session.end.
func (es *execSession) abortSPDY(sw *switched, cause error) {
	es.mu.Lock()
	if es.recErr == nil {
		es.recErr = cause
	}
	var errStream spdy.StreamId
	if es.spdy != nil {
		errStream = es.spdy.errStream
	}
	es.mu.Unlock()
	es.h.log.Error(es.verb+" closed: its SPDY stream cannot be recorded", "session", es.id, "err", cause)
	if errStream != 0 {
		if frame, err := spdyErrorFrame(errStream, "jumpgate: this "+es.verb+" stream could not be recorded, so the bastion closed it"); err == nil {
			_ = sw.client.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = sw.client.Write(frame)
		}
	}
	sw.abort(cause)
}

func (es *execSession) feed(d *wsDemux, p []byte, n *int64) {
	es.mu.Lock()
	defer es.mu.Unlock()
	*n += int64(len(p))
	if d == nil || es.recErr != nil {
		return
	}
	if err := d.Feed(p); err != nil {
		es.recErr = err
		es.h.log.Warn(es.verb+" recording stopped", "session", es.id, "err", err)
	}
}

// fromClient and fromServer run under es.mu (from feed).
func (es *execSession) fromClient(ch byte, data []byte) {
	switch ch {
	case chanStdin:
		es.record(es.rec.Input(data))
	case chanResize:
		var sz struct{ Width, Height int }
		if json.Unmarshal(data, &sz) == nil && sz.Width > 0 && sz.Height > 0 {
			es.record(es.rec.Resize(sz.Width, sz.Height))
		}
	}
}

// fromClientSPDY and fromServerSPDY run under es.mu (from spdyGate).
// Each direction records only the streams that flow its way.
func (es *execSession) fromClientSPDY(typ string, data []byte) {
	switch typ {
	case spdyStdin:
		es.record(es.rec.Input(data))
	case spdyResize:
		// kubectl writes one JSON object per frame.
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var sz struct{ Width, Height int }
			if dec.Decode(&sz) != nil {
				break
			}
			if sz.Width > 0 && sz.Height > 0 {
				es.record(es.rec.Resize(sz.Width, sz.Height))
			}
		}
	}
}

func (es *execSession) fromServerSPDY(typ string, data []byte) {
	if typ == spdyStdout || typ == spdyStderr {
		es.record(es.rec.Output(data))
	}
}

func (es *execSession) fromServer(ch byte, data []byte) {
	if ch == chanStdout || ch == chanStderr {
		es.record(es.rec.Output(data))
	}
}

func (es *execSession) record(err error) {
	if err != nil && es.recErr == nil {
		es.recErr = err
		es.h.log.Error(es.verb+" recording failed", "session", es.id, "err", err)
	}
}

func (es *execSession) index(end time.Time, sum, sig string) storage.Session {
	h := es.h
	st := storage.Session{ID: es.id, User: h.s.User, Target: h.t.Name, Kind: es.kind, Command: es.cmd,
		Start: es.started.UTC(), Status: storage.SessionRunning, Recording: es.file, Source: h.s.Source, SHA256: sum, Signature: sig, Replica: h.f.cfg.Replica}
	if !end.IsZero() {
		st.End, st.Status, st.Bytes = end.UTC(), storage.SessionEnded, es.in+es.out
	}
	return st
}

// finish closes and signs the recording and announces the session's end.
func (es *execSession) finish(ctx context.Context) {
	h := es.h
	ctx = context.WithoutCancel(ctx)
	end := h.f.cfg.Clock()
	es.mu.Lock()
	defer es.mu.Unlock()
	d := map[string]any{"kind": es.kind, "command": es.cmd, "pod": es.what, "recording": es.file,
		"bytes_in": es.in, "bytes_out": es.out, "duration": end.Sub(es.started).Round(time.Millisecond).String(),
		"channel": h.s.ID}
	var sum, sig string
	if es.rec != nil {
		s, err := es.rec.Close()
		if err != nil {
			h.log.Error("recording close failed", "session", es.id, "err", err)
			d["recording_error"] = err.Error()
		}
		if s.SHA256 != "" {
			sum = s.SHA256
			d["sha256"], d["recording_bytes"] = sum, s.Bytes
			if len(h.f.cfg.AuditKey) > 0 {
				if sig, err = recorder.Sign(h.f.cfg.AuditKey, sum, es.id); err != nil {
					h.log.Error("recording signature", "session", es.id, "err", err)
				}
				d["signature"] = sig
			}
		}
	}
	if es.recErr != nil {
		d["recording_error"] = es.recErr.Error()
	}
	if h.f.cfg.Sessions != nil {
		if err := h.f.cfg.Sessions.PutSession(ctx, es.index(end, sum, sig)); err != nil {
			h.log.Error("session index", "err", err)
		}
	}
	h.emitAs(ctx, audit.SessionEnd, es.id, d)
}

// recordings returns where exec recordings go.
func (f *Forwarder) recordings() recordings.Store {
	if f.cfg.Recordings != nil {
		return f.cfg.Recordings
	}
	return recordings.Dir{Path: f.cfg.RecordingsDir}
}
