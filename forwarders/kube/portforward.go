package kube

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jumpgate/jumpgate/audit"
)

// SessionKindPortForward is the kind in the forward.end event of a pod
// port-forward.
const SessionKindPortForward = "kube-portforward"

// portForward is one pod port-forward: it is relayed, not recorded (its
// bytes are the forwarded connections' own), and leaves a forward.end
// event with the bytes each way, the ports asked for and the duration,
// like an SSH -L forward.
type portForward struct {
	h       *handler
	id      string
	what    string
	ports   string
	proto   string
	started time.Time
	in, out atomic.Int64
}

func (h *handler) startPortForward(r *http.Request, ri RequestInfo) *portForward {
	q := r.URL.Query()
	return &portForward{h: h, id: h.f.cfg.NewID(), started: h.f.cfg.Clock(),
		what:  fmt.Sprintf("pod %s -n %s", ri.Name, ri.Namespace),
		ports: strings.Join(q["ports"], ",")}
}

// tap counts the bytes of the switched protocol each way.
func (pf *portForward) tap(resp *http.Response, _ *switched) (up, down func(io.Reader) io.Reader) {
	pf.proto = resp.Header.Get("Sec-WebSocket-Protocol")
	if isSPDY(resp.Header.Get("Upgrade")) {
		pf.proto = resp.Header.Get("X-Stream-Protocol-Version")
		if pf.proto == "" {
			pf.proto = "SPDY/3.1"
		}
	}
	up = observe(func(p []byte) { pf.in.Add(int64(len(p))) })
	down = observe(func(p []byte) { pf.out.Add(int64(len(p))) })
	return up, down
}

// finish emits the port-forward's forward.end event.
func (pf *portForward) finish(ctx context.Context) {
	h := pf.h
	end := h.f.cfg.Clock()
	d := map[string]any{"kind": SessionKindPortForward, "pod": pf.what, "protocol": pf.proto,
		"bytes_in": pf.in.Load(), "bytes_out": pf.out.Load(),
		"duration": end.Sub(pf.started).Round(time.Millisecond).String(), "channel": h.s.ID}
	if pf.ports != "" {
		d["ports"] = pf.ports
	}
	h.emitAs(ctx, audit.ForwardEnd, pf.id, d)
}
