package kube

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"

	"github.com/jumpgate/jumpgate/relay"
)

// ErrUpgradeRefused is returned (and logged) when the API server answers
// an upgrade with a protocol other than the one asked for.
var ErrUpgradeRefused = errors.New("kube: upstream switched to another protocol")

// hopHeaders are the hop-by-hop headers an upgrade does not pass on
// (Connection and Upgrade are set again explicitly).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// serveUpgrade relays an exec, attach, port-forward or proxy upgrade
// itself: it sends the request over a fresh HTTP/1.1 connection, passes a
// refusal on as an ordinary response, and after 101 Switching Protocols
// copies both directions independently, passing each half-close on, until
// both have ended or ctx is cancelled (relay.Pipe). tap, when not nil,
// wraps the reading side of each direction of the switched protocol.
func (h *handler) serveUpgrade(w http.ResponseWriter, r *http.Request, tap upgradeTap) {
	ctx := r.Context()
	if r.ProtoMajor != 1 {
		writeStatus(w, http.StatusBadRequest, "jumpgate: protocol upgrades need HTTP/1.1")
		return
	}
	upType := r.Header.Get("Upgrade")
	out := r.Clone(ctx)
	out.Header = r.Header.Clone()
	removeHop(out.Header)
	out.RequestURI = ""
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = nil
	}
	h.rewrite(&httputil.ProxyRequest{In: r, Out: out})
	out.Header.Set("Connection", "Upgrade")
	out.Header.Set("Upgrade", upType)

	up, err := h.dialUpstream(ctx)
	if err != nil {
		h.proxyError(w, r, err)
		return
	}
	closeUp := context.AfterFunc(ctx, func() { _ = up.Close() })
	defer closeUp()
	if err := out.Write(up); err != nil {
		_ = up.Close()
		h.proxyError(w, r, fmt.Errorf("kube: send upgrade: %w", err))
		return
	}
	br := bufio.NewReader(up)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		_ = up.Close()
		h.proxyError(w, r, fmt.Errorf("kube: read upgrade response: %w", err))
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer up.Close()
		defer resp.Body.Close()
		removeHop(resp.Header)
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	if got := resp.Header.Get("Upgrade"); !strings.EqualFold(got, upType) {
		_ = up.Close()
		h.proxyError(w, r, fmt.Errorf("%w: asked for %q, got %q", ErrUpgradeRefused, upType, got))
		return
	}
	client, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = up.Close()
		h.log.Warn("cannot take over the client connection", "err", err)
		return
	}
	// The relay's own context: a tap's abort ends it, closing both sides.
	rctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	clientSide := &upgradedConn{Conn: client}
	var upTap, downTap func(io.Reader) io.Reader
	if tap != nil {
		upTap, downTap = tap(resp, &switched{abort: abort, client: clientSide})
	}
	removeHop(resp.Header)
	resp.Header.Set("Connection", "Upgrade")
	resp.Header.Set("Upgrade", upgradeOf(resp, upType))
	var head strings.Builder
	fmt.Fprintf(&head, "HTTP/1.1 101 Switching Protocols\r\n")
	_ = resp.Header.Write(&head)
	head.WriteString("\r\n")
	if _, err := io.WriteString(client, head.String()); err != nil {
		_ = client.Close()
		_ = up.Close()
		return
	}
	// Bytes read ahead on either side belong to the switched protocol.
	// The client's are taken out of the server's reader, never read
	// through it: its EOF would cancel the request's context.
	ahead, _ := cbuf.Reader.Peek(cbuf.Reader.Buffered())
	a := clientSide
	a.r = io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), client)
	b := &upgradedConn{Conn: up, r: br}
	if upTap != nil {
		a.r = upTap(a.r)
	}
	if downTap != nil {
		b.r = downTap(b.r)
	}
	n, err := relay.Pipe(rctx, a, b)
	if cause := context.Cause(rctx); cause != nil && ctx.Err() == nil {
		h.log.Warn("upgrade relay aborted", "err", cause)
	} else if err != nil && ctx.Err() == nil {
		h.log.Debug("upgrade relay ended", "err", err)
	}
	h.log.Debug("upgrade relayed", "to_upstream", n.AtoB, "to_client", n.BtoA)
}

func upgradeOf(resp *http.Response, def string) string {
	if v := resp.Header.Get("Upgrade"); v != "" {
		return v
	}
	return def
}

// dialUpstream opens an HTTP/1.1 connection to the API server.
func (h *handler) dialUpstream(ctx context.Context) (net.Conn, error) {
	host := h.upstream.Host
	if h.upstream.Port() == "" {
		if h.upstream.Scheme == "https" {
			host = net.JoinHostPort(h.upstream.Hostname(), "443")
		} else {
			host = net.JoinHostPort(h.upstream.Hostname(), "80")
		}
	}
	c, err := h.f.cfg.Dial(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("kube: dial %s: %w", host, err)
	}
	if h.upstream.Scheme != "https" {
		return c, nil
	}
	cfg := h.f.tlsConfig(h.t)
	cfg.ServerName = h.upstream.Hostname()
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("kube: TLS to %s: %w", host, err)
	}
	return tc, nil
}

// upgradeTap is called on the upgrade's 101 with the relay about to
// start; it returns wrappers (nil: none) for the reading side of each
// direction, which may observe the bytes, hold them back or fail.
type upgradeTap func(resp *http.Response, sw *switched) (up, down func(io.Reader) io.Reader)

// switched is the relay of a switched protocol as a tap sees it.
type switched struct {
	// abort ends the relay, closing both connections; the cause is logged.
	abort context.CancelCauseFunc
	// client is the client's side; its Write is serialised with the
	// relay's, so a tap may write whole messages of the protocol to it.
	client *upgradedConn
}

// upgradedConn is one side of a switched protocol: reads drain what was
// read ahead first; writes are serialised; CloseWrite half-closes the
// connection underneath (a *tls.Conn sends close_notify, a *net.TCPConn a
// FIN).
type upgradedConn struct {
	net.Conn
	r   io.Reader
	wmu sync.Mutex
}

func (c *upgradedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *upgradedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(p)
}

// observe returns a tap wrapper that shows fn every byte read.
func observe(fn func([]byte)) func(io.Reader) io.Reader {
	return func(r io.Reader) io.Reader { return &observer{r: r, fn: fn} }
}

type observer struct {
	r  io.Reader
	fn func([]byte)
}

func (o *observer) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	if n > 0 {
		o.fn(p[:n])
	}
	return n, err
}

func (c *upgradedConn) CloseWrite() error { return relay.CloseWrite(c.Conn) }
