package kube

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
)

// handler serves the requests of one channel.
type handler struct {
	f        *Forwarder
	log      *slog.Logger
	s        forwarders.Session
	t        config.Target
	upstream *url.URL
	proxy    *httputil.ReverseProxy
	wg       *sync.WaitGroup
	// audit writes this connection's kube.request events off the
	// requests' critical path.
	audit *auditQueue
}

// reqState travels in the request context from ServeHTTP to the proxy hooks.
type reqState struct {
	ri    RequestInfo
	mask  *masker
	token string
}

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

func (h *handler) policyTarget() policy.Target {
	return policy.Target{Name: h.t.Name, Kind: h.t.Kind, Labels: h.t.Labels}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.wg.Add(1)
	defer h.wg.Done()
	if err := h.audit.Err(); err != nil {
		// Fail closed: nothing more passes on a connection whose audit
		// events cannot be written; Serve is closing it.
		writeStatus(closingWriter{w}, http.StatusServiceUnavailable, "jumpgate: the audit log cannot be written, so nothing more is served on this connection; the bastion logged why")
		return
	}
	start := h.f.cfg.Clock()
	rw := &statusWriter{ResponseWriter: w}
	ri, err := Classify(r.Method, r.URL)
	details := func() map[string]any {
		d := map[string]any{
			"method": r.Method, "verb": ri.Verb, "apiGroup": ri.APIGroup, "resource": ri.Resource,
			"subresource": ri.Subresource, "namespace": ri.Namespace, "name": ri.Name,
		}
		if !ri.IsResource {
			d["path"] = r.URL.Path
		}
		if ri.Subresource == "exec" || ri.Subresource == "attach" {
			q := r.URL.Query()
			if cmd := execCommand(q); cmd != "" {
				d["command"] = cmd
			}
			if c := q.Get("container"); c != "" {
				d["container"] = c
			}
		}
		return d
	}
	if err != nil {
		writeStatus(rw, http.StatusBadRequest, "jumpgate: the request path or method is ambiguous or unsupported, so it is refused")
		d := details()
		d["path"], d["reason"], d["status"] = r.URL.EscapedPath(), err.Error(), http.StatusBadRequest
		h.emit(r.Context(), audit.KubeBlocked, d)
		return
	}
	refuse := func(code int, msg, rule string) {
		writeStatus(rw, code, msg)
		d := details()
		d["reason"], d["rule"], d["status"] = msg, rule, code
		h.emit(r.Context(), audit.KubeBlocked, d)
	}
	if headerBytes(r.Header) > h.f.cfg.MaxHeaderBytes {
		refuse(http.StatusRequestHeaderFieldsTooLarge, "jumpgate: request headers too large", "")
		return
	}
	if r.ContentLength > h.f.cfg.MaxBodyBytes {
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("jumpgate: request body larger than %d bytes", h.f.cfg.MaxBodyBytes), "")
		return
	}
	if isUpgrade(r) && !ri.Connect {
		refuse(http.StatusBadRequest, "jumpgate: protocol upgrades are only for exec, attach, portforward and proxy", "")
		return
	}

	p := h.f.cfg.Policy.Current()
	id, pt := h.s.Identity(), h.policyTarget()
	if !p.AccessTo(id, pt).Allowed {
		refuse(http.StatusForbidden, "jumpgate: you have no access to "+h.t.Name, "")
		return
	}
	rules := p.KubeRules(id, pt)
	dec := rules.Decide(ri.KubeRequest)
	if ri.Subresource == "exec" && ri.Resource == "pods" {
		if cmd := execCommand(r.URL.Query()); cmd != "" {
			if cd := p.CheckCommand(id, pt, cmd); cd.Action > dec.Action {
				dec = cd
			}
		}
	}
	switch {
	case dec.Blocked():
		refuse(http.StatusForbidden, "jumpgate: "+dec.Reason, dec.Rule)
		return
	case dec.Held():
		if ok, msg := h.hold(r.Context(), dec, ri, r.URL.Query()); !ok {
			refuse(http.StatusForbidden, msg, dec.Rule)
			return
		}
	}

	st := &reqState{ri: ri}
	if ri.IsResource {
		if fields := rules.MaskFields(ri.Resource); len(fields) > 0 {
			st.mask = newMasker(fields)
		}
	}
	if h.t.Credentials.TokenFile != "" {
		tok, err := h.f.cfg.ReadSecret(h.t.Credentials.TokenFile)
		if err != nil {
			h.log.Error("cannot read target token", "err", err)
			writeStatus(rw, http.StatusBadGateway, "jumpgate: the credentials for "+h.t.Name+" are unreadable; the bastion logged why")
			d := details()
			d["status"], d["duration_ms"] = http.StatusBadGateway, h.f.cfg.Clock().Sub(start).Milliseconds()
			h.emit(r.Context(), audit.KubeRequest, d)
			return
		}
		st.token = tok
	}
	r.Body = http.MaxBytesReader(rw, r.Body, h.f.cfg.MaxBodyBytes)
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	var es *execSession
	switch {
	case isUpgrade(r) && ri.Resource == "pods" && (ri.Subresource == "exec" || ri.Subresource == "attach"):
		es, err = h.startExec(r, ri)
		if err != nil {
			h.log.Error(ri.Subresource+" refused: cannot record it", "err", err)
			refuse(http.StatusServiceUnavailable, "jumpgate: this "+ri.Subresource+" cannot be recorded, so it is refused: "+recordRefusal(err), "")
			return
		}
		h.serveUpgrade(rw, r, es.tap)
		if rw.code() == http.StatusSwitchingProtocols {
			es.finish(r.Context())
		} else {
			es.abandon()
		}
	case isUpgrade(r) && ri.Resource == "pods" && ri.Subresource == "portforward":
		pf := h.startPortForward(r, ri)
		h.serveUpgrade(rw, r, pf.tap)
		if rw.code() == http.StatusSwitchingProtocols {
			pf.finish(r.Context())
		}
	case isUpgrade(r):
		h.serveUpgrade(rw, r, nil)
	default:
		h.proxy.ServeHTTP(rw, r)
	}

	d := details()
	d["status"] = rw.code()
	d["duration_ms"] = h.f.cfg.Clock().Sub(start).Milliseconds()
	if es != nil && rw.code() == http.StatusSwitchingProtocols {
		d["exec_session"] = es.id
	}
	if dec.Held() {
		d["approved"] = true
	}
	if isUpgrade(r) {
		// An exec, attach or port-forward has ended: nobody waits for
		// a response, and its event stays after the session's own.
		h.audit.writeNow(h.event(audit.KubeRequest, d))
		return
	}
	h.audit.enqueue(h.event(audit.KubeRequest, d))
}

// hold waits for approval of a request under kubernetes.review.
func (h *handler) hold(ctx context.Context, dec policy.Decision, ri RequestInfo, q url.Values) (bool, string) {
	if h.f.cfg.Approvals == nil {
		return false, "jumpgate: " + dec.Reason + "; no approval queue is configured, so it is refused"
	}
	ctx, cancel := context.WithTimeout(ctx, h.f.cfg.HoldTimeout)
	defer cancel()
	what := describe(ri)
	if cmd := execCommand(q); cmd != "" && ri.Subresource == "exec" {
		what += ": " + cmd
	}
	req, err := h.f.cfg.Approvals.Create(ctx, storage.Request{Kind: storage.KindKube, User: h.s.User, Groups: h.s.Groups,
		Target: h.t.Name, What: what, Reason: dec.Reason, Session: h.s.ID}, h.f.cfg.HoldTimeout)
	if err != nil {
		h.log.Error("cannot hold request", "err", err)
		return false, "jumpgate: " + dec.Reason + "; the hold could not be recorded, so it is refused"
	}
	h.log.Info("kube request held", "request", req.ID, "what", what)
	got, err := h.f.cfg.Approvals.Wait(ctx, req.ID)
	if err != nil {
		return false, fmt.Sprintf("jumpgate: %s; request %s was not decided in time, so it was not sent", dec.Reason, req.ID)
	}
	if got.Status != storage.StatusApproved {
		return false, fmt.Sprintf("jumpgate: %s; request %s was %s, so it was not sent", dec.Reason, req.ID, got.Status)
	}
	return true, ""
}

func describe(ri RequestInfo) string {
	s := ri.Verb + " " + ri.ResourcePath()
	if ri.APIGroup != "" {
		s += "." + ri.APIGroup
	}
	if ri.Name != "" {
		s += " " + ri.Name
	}
	if ri.Namespace != "" {
		s += " -n " + ri.Namespace
	}
	return s
}

// rewrite prepares the upstream request: the target's URL and
// credentials, the user's impersonation, nothing the client claimed.
func (h *handler) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = h.upstream.Scheme
	out.URL.Host = h.upstream.Host
	out.URL.Path = strings.TrimSuffix(h.upstream.Path, "/") + pr.In.URL.Path
	out.URL.RawPath = ""
	out.URL.RawQuery = pr.In.URL.RawQuery
	out.Host = ""
	for k := range out.Header {
		lk := strings.ToLower(k)
		if lk == "authorization" || lk == "proxy-authorization" || strings.HasPrefix(lk, "impersonate-") ||
			strings.HasPrefix(lk, "x-remote-") || lk == "cookie" {
			delete(out.Header, k)
		}
	}
	if st.token != "" {
		out.Header.Set("Authorization", "Bearer "+st.token)
	}
	out.Header.Set("Impersonate-User", h.s.User)
	if len(h.s.Groups) > 0 {
		out.Header["Impersonate-Group"] = append([]string(nil), h.s.Groups...)
	}
	if st.mask != nil {
		out.Header.Set("Accept", jsonAccept(out.Header.Get("Accept")))
		// Without Accept-Encoding the transport asks for gzip itself and
		// hands over the decompressed body.
		out.Header.Del("Accept-Encoding")
	}
}

// modifyResponse masks responses that carry a masked resource.
func (h *handler) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request.Context())
	if st == nil || st.mask == nil {
		return nil
	}
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || resp.Request.Method == http.MethodHead {
		return nil
	}
	mt, watch := mediaType(resp.Header.Get("Content-Type"))
	body, err := decoded(resp.Header.Get("Content-Encoding"), resp.Body)
	if err != nil {
		return err
	}
	if watch || st.ri.Verb == "watch" {
		if mt != "application/json" {
			return fmt.Errorf("%w: watch stream of type %q", ErrCannotMask, resp.Header.Get("Content-Type"))
		}
		upBody := resp.Body
		pr, pw := io.Pipe()
		resp.Body = pr
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			err := st.mask.watch(pw, body, func() {})
			_ = upBody.Close()
			pw.CloseWithError(err)
			if err != nil && !errors.Is(err, io.ErrClosedPipe) {
				h.log.Warn("watch stream cut: cannot mask", "err", err)
			}
		}()
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(body, h.f.cfg.MaxMaskBytes+1))
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("kube: read response: %w", err)
	}
	if int64(len(data)) > h.f.cfg.MaxMaskBytes {
		return fmt.Errorf("%w: response larger than %d bytes", ErrCannotMask, h.f.cfg.MaxMaskBytes)
	}
	if len(data) == 0 {
		resp.Body = io.NopCloser(bytes.NewReader(nil))
		return nil
	}
	masked, err := st.mask.body(mt, data)
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(masked))
	resp.ContentLength = int64(len(masked))
	resp.Header.Set("Content-Length", strconv.Itoa(len(masked)))
	resp.Header.Del("Content-Encoding")
	return nil
}

// proxyError answers what the proxy could not relay.
func (h *handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeStatus(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("jumpgate: request body larger than %d bytes", mbe.Limit))
	case errors.Is(err, ErrCannotMask):
		h.log.Warn("response refused: cannot mask", "err", err)
		writeStatus(w, http.StatusBadGateway, "jumpgate: the response carries masked fields in a form the gate cannot mask, so it is refused")
	case r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
		w.WriteHeader(499)
	default:
		h.log.Warn("API server unreachable", "err", err)
		writeStatus(w, http.StatusServiceUnavailable, "jumpgate: cannot reach the API server of "+h.t.Name+"; the bastion logged why")
	}
}

func (h *handler) emit(ctx context.Context, typ string, d map[string]any) {
	h.emitAs(ctx, typ, h.s.ID, d)
}

// event is an event of this connection's session, stamped now (the
// audit writers may commit it later).
func (h *handler) event(typ string, d map[string]any) audit.Event {
	return audit.Event{Time: h.f.cfg.Clock().UTC(), Type: typ, User: h.s.User, Target: h.t.Name, Session: h.s.ID, Source: h.s.Source, Details: d}
}

// emitAs emits an event of session id (an exec's own session).
func (h *handler) emitAs(ctx context.Context, typ, id string, d map[string]any) {
	e := audit.Event{Type: typ, User: h.s.User, Target: h.t.Name, Session: id, Source: h.s.Source, Details: d}
	if _, err := h.f.cfg.Audit.Emit(context.WithoutCancel(ctx), e); err != nil {
		h.log.Error("audit event lost", "type", typ, "err", err)
	}
}

// statusWriter remembers the status code it wrote and passes through
// Flush and Hijack (watches and upgrades need them).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 || (w.status >= 100 && w.status < 200 && w.status != http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach Flush, Hijack and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") != "" {
		return true
	}
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// execCommand renders exec's command parameters as a shell line.
func execCommand(q url.Values) string {
	args := q["command"]
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == '=' || r == ':' || r == ',' || r == '@' || r == '+' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Hijack records the switch of protocols (serveUpgrade hijacks to relay
// upgrades and writes the 101 itself).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// recordRefusal says in a line why an exec could not be recorded, without
// file paths: an unknown upgrade protocol or a recording store that failed.
func recordRefusal(err error) string {
	if errors.Is(err, ErrNotRecordable) {
		return "the exec protocol is neither WebSocket nor SPDY/3.1, or recording is not configured"
	}
	return "the recording could not be opened"
}
