package kube

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/jumpgate/jumpgate/audit"
)

const secretJSON = `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default"},"type":"Opaque","data":{"password":"aHVudGVyMg==","user":"YWRtaW4="},"stringData":{"x":"plain"}}`

func decodeStatus(t *testing.T, resp *http.Response) status {
	t.Helper()
	defer resp.Body.Close()
	var st status
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Status content type %q", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decode Status: %v", err)
	}
	if st.Kind != "Status" || st.APIVersion != "v1" || st.Status != "Failure" || st.Code != resp.StatusCode || st.Message == "" {
		t.Fatalf("bad Status %+v for HTTP %d", st, resp.StatusCode)
	}
	return st
}

func TestIdentityStrippedAndImpersonated(t *testing.T) {
	var mu sync.Mutex
	var got []http.Header
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"PodList","apiVersion":"v1","items":[]}`)
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			c := e.newClient(t, h2)
			req, _ := http.NewRequest("GET", e.url("/api/v1/namespaces/default/pods"), nil)
			req.Header.Set("Authorization", "Bearer stolen-admin-token")
			req.Header.Set("Impersonate-User", "admin")
			req.Header.Add("Impersonate-Group", "system:masters")
			req.Header.Set("Impersonate-Extra-Scopes", "all")
			req.Header.Set("Impersonate-Uid", "0")
			req.Header.Set("X-Remote-User", "admin")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if h2 != (resp.ProtoMajor == 2) {
				t.Fatalf("protocol %s, want h2=%v", resp.Proto, h2)
			}
			mu.Lock()
			h := got[len(got)-1]
			mu.Unlock()
			if a := h.Values("Authorization"); !slices.Equal(a, []string{"Bearer upstream-token"}) {
				t.Errorf("Authorization upstream = %q", a)
			}
			if u := h.Values("Impersonate-User"); !slices.Equal(u, []string{"alice"}) {
				t.Errorf("Impersonate-User = %q", u)
			}
			if g := h.Values("Impersonate-Group"); !slices.Equal(g, []string{"engineering", "oncall"}) {
				t.Errorf("Impersonate-Group = %q", g)
			}
			for k := range h {
				if k == "Impersonate-Extra-Scopes" || k == "Impersonate-Uid" || k == "X-Remote-User" {
					t.Errorf("client header %s reached the upstream", k)
				}
			}
		})
	}
	// kube.request events are committed after the response goes out.
	waitFor(t, "2 kube.request events", func() bool { return len(e.audit.ofType(audit.KubeRequest)) >= 2 })
	ev := e.audit.ofType(audit.KubeRequest)
	if len(ev) != 2 {
		t.Fatalf("%d kube.request events, want 2", len(ev))
	}
	d := ev[0].Details
	if ev[0].User != "alice" || d["verb"] != "list" || d["resource"] != "pods" || d["namespace"] != "default" || d["status"] != 200 {
		t.Fatalf("audit event %+v", ev[0])
	}
	if _, ok := d["duration_ms"]; !ok {
		t.Fatal("no duration in audit")
	}
}

func assertMasked(t *testing.T, obj map[string]any) {
	t.Helper()
	data, _ := obj["data"].(map[string]any)
	if len(data) != 2 {
		t.Fatalf("data keys lost: %v", obj["data"])
	}
	for k, v := range data {
		s, _ := v.(string)
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("data[%s] = %q is not base64", k, s)
		}
		if string(raw) != maskText {
			t.Fatalf("data[%s] decodes to %q, want the mask", k, raw)
		}
	}
	if sd, _ := obj["stringData"].(map[string]any); sd != nil && sd["x"] != maskText {
		t.Fatalf("stringData not masked: %v", sd)
	}
}

func TestMasking(t *testing.T) {
	list := `{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[` + secretJSON + `,` + secretJSON + `]}`
	table := `{"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":[],"rows":[{"cells":["db"],"object":` + secretJSON + `}]}`
	var secretYAML any
	_ = json.Unmarshal([]byte(secretJSON), &secretYAML)
	yb, _ := yaml.Marshal(secretYAML)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(secretJSON))
	zw.Close()

	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept"), "protobuf") {
			t.Errorf("protobuf asked upstream for a masked resource: %q", r.Header.Get("Accept"))
		}
		switch r.URL.Query().Get("case") {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, secretJSON)
		case "yaml":
			w.Header().Set("Content-Type", "application/yaml")
			w.Write(yb)
		case "list":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, list)
		case "table":
			w.Header().Set("Content-Type", "application/json;as=Table;v=v1;g=meta.k8s.io")
			io.WriteString(w, table)
		case "gzip":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz.Bytes())
		case "watch":
			w.Header().Set("Content-Type", "application/json;stream=watch")
			for _, typ := range []string{"ADDED", "MODIFIED"} {
				fmt.Fprintf(w, `{"type":%q,"object":%s}`+"\n", typ, secretJSON)
				w.(http.Flusher).Flush()
			}
		case "protobuf":
			w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
			w.Write([]byte("k8s\x00\x0a\x0csecret-bytes"))
		}
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	get := func(t *testing.T, c string, accept string) *http.Response {
		path := "/api/v1/namespaces/default/secrets/db?case=" + c
		if c == "list" || c == "table" {
			path = "/api/v1/namespaces/default/secrets?case=" + c
		}
		if c == "watch" {
			path = "/api/v1/namespaces/default/secrets?watch=1&case=" + c
		}
		req, _ := http.NewRequest("GET", e.url(path), nil)
		req.Header.Set("Accept", accept)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	decodeJSON := func(t *testing.T, resp *http.Response) map[string]any {
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Run("json", func(t *testing.T) {
		assertMasked(t, decodeJSON(t, get(t, "json", "application/json")))
	})
	t.Run("protobuf asked, json answered", func(t *testing.T) {
		resp := get(t, "json", "application/vnd.kubernetes.protobuf, application/json")
		assertMasked(t, decodeJSON(t, resp))
	})
	t.Run("yaml", func(t *testing.T) {
		resp := get(t, "yaml", "application/yaml")
		defer resp.Body.Close()
		var v map[string]any
		if err := yaml.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		assertMasked(t, v)
	})
	t.Run("list", func(t *testing.T) {
		v := decodeJSON(t, get(t, "list", "application/json"))
		items := v["items"].([]any)
		if len(items) != 2 {
			t.Fatalf("%d items", len(items))
		}
		for _, it := range items {
			assertMasked(t, it.(map[string]any))
		}
	})
	t.Run("table", func(t *testing.T) {
		v := decodeJSON(t, get(t, "table", "application/json;as=Table;v=v1;g=meta.k8s.io"))
		row := v["rows"].([]any)[0].(map[string]any)
		assertMasked(t, row["object"].(map[string]any))
	})
	t.Run("gzip", func(t *testing.T) {
		resp := get(t, "gzip", "application/json")
		if resp.Header.Get("Content-Encoding") != "" {
			t.Fatalf("still encoded: %q", resp.Header.Get("Content-Encoding"))
		}
		assertMasked(t, decodeJSON(t, resp))
	})
	t.Run("watch", func(t *testing.T) {
		resp := get(t, "watch", "application/json")
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		n := 0
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatal(err)
			}
			assertMasked(t, ev["object"].(map[string]any))
			n++
		}
		if n != 2 {
			t.Fatalf("%d events", n)
		}
	})
	t.Run("unmaskable refused", func(t *testing.T) {
		resp := get(t, "protobuf", "application/json")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d", resp.StatusCode)
		}
		decodeStatus(t, resp)
	})
}

func TestRefusals(t *testing.T) {
	var mu sync.Mutex
	var reached []string
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Success"}`)
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	do := func(t *testing.T, method, path string, hdr map[string]string, body io.Reader) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, e.url(path), body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		want               int
		msg                string
	}{
		{"delete namespace blocked", "DELETE", "/api/v1/namespaces/prod", nil, 403, "blocked by policy"},
		{"deletecollection blocked", "DELETE", "/api/v1/namespaces", nil, 403, "blocked by policy"},
		{"percent-encoded resource still blocked", "DELETE", "/api/v1/namespaces/pr%6fd", nil, 403, "blocked"},
		{"encoded slash refused", "DELETE", "/api/v1/namespaces%2Fprod", nil, 400, "ambiguous"},
		{"double slash refused", "DELETE", "/api/v1//namespaces/prod", nil, 400, "ambiguous"},
		{"dot-dot refused", "DELETE", "/api/v1/pods/%2e%2e/namespaces/prod", nil, 400, "ambiguous"},
		{"unknown method refused", "PROPFIND", "/api/v1/namespaces", nil, 400, "ambiguous"},
		{"attach blocked whatever the method", "GET", "/api/v1/namespaces/a/pods/p/attach", nil, 403, "blocked"},
		{"upgrade to a plain resource refused", "GET", "/api/v1/namespaces/a/pods/p", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}, 400, "upgrades"},
		{"oversized header refused", "GET", "/api/v1/namespaces/a/pods", map[string]string{"X-Big": strings.Repeat("a", 300<<10)}, 431, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, tt.method, tt.path, tt.hdr, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			st := decodeStatus(t, resp)
			if !strings.Contains(st.Message, tt.msg) {
				t.Fatalf("message %q lacks %q", st.Message, tt.msg)
			}
		})
	}
	t.Run("oversized body refused", func(t *testing.T) {
		e.f.cfg.MaxBodyBytes = 1 << 10
		defer func() { e.f.cfg.MaxBodyBytes = 32 << 20 }()
		resp := do(t, "POST", "/api/v1/namespaces/a/configmaps", nil, strings.NewReader(strings.Repeat("x", 4<<10)))
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
		decodeStatus(t, resp)
	})
	mu.Lock()
	for _, r := range reached {
		if strings.Contains(r, "namespaces/prod") || strings.HasPrefix(r, "DELETE /api/v1/namespaces") || strings.Contains(r, "attach") {
			t.Errorf("refused request reached the upstream: %s", r)
		}
	}
	mu.Unlock()
	blocked := e.audit.ofType(audit.KubeBlocked)
	if len(blocked) < len(tests) {
		t.Fatalf("%d kube.blocked events, want at least %d", len(blocked), len(tests))
	}
	d := blocked[0].Details
	if d["verb"] != "delete" || d["resource"] != "namespaces" || d["name"] != "prod" || d["status"] != 403 || d["rule"] == "" {
		t.Fatalf("blocked event details %v", d)
	}
}

func TestHold(t *testing.T) {
	var mu sync.Mutex
	deleted := 0
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "DELETE" {
			mu.Lock()
			deleted++
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Success"}`)
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	for _, tt := range []struct {
		decision string
		want     int
	}{{"approved", 200}, {"denied", 403}} {
		t.Run(tt.decision, func(t *testing.T) {
			e.appr.decision <- tt.decision
			req, _ := http.NewRequest("DELETE", e.url("/api/v1/namespaces/default/configmaps/cfg"), nil)
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want != 200 {
				st := decodeStatus(t, resp)
				if !strings.Contains(st.Message, "denied") {
					t.Fatalf("message %q", st.Message)
				}
			}
			resp.Body.Close()
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if deleted != 1 {
		t.Fatalf("upstream saw %d deletes, want 1 (the approved one)", deleted)
	}
	if len(e.appr.created) != 2 || e.appr.created[0].Kind != "kube" || !strings.Contains(e.appr.created[0].What, "delete configmaps cfg -n default") {
		t.Fatalf("held requests %+v", e.appr.created)
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, upCA := newUpstream(t, func(http.ResponseWriter, *http.Request) {})
	e := startForwarder(t, addr, upCA, testPolicy, alice)
	for i := 0; i < 2; i++ {
		resp, err := e.client.Get(e.url("/api/v1/namespaces/default/pods"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d", resp.StatusCode)
		}
		st := decodeStatus(t, resp)
		if !strings.Contains(st.Message, "cannot reach") {
			t.Fatalf("message %q", st.Message)
		}
	}
	waitFor(t, "2 kube.request events", func() bool { return len(e.audit.ofType(audit.KubeRequest)) >= 2 })
	ev := e.audit.ofType(audit.KubeRequest)
	if len(ev) != 2 || ev[0].Details["status"] != http.StatusServiceUnavailable {
		t.Fatalf("audit %+v", ev)
	}
}

func TestMalformedHTTP(t *testing.T) {
	_, upCA := newUpstream(t, func(http.ResponseWriter, *http.Request) {})
	e := startForwarder(t, "127.0.0.1:1", upCA, testPolicy, alice)
	// Plain text instead of TLS: the handshake fails, the forwarder survives.
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	io.Copy(io.Discard, c)
	c.Close()
	// Garbage inside TLS.
	resp, err := e.client.Get(e.url("/version"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
