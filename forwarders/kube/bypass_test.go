package kube

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// bypassPolicy blocks every way of changing or removing a namespace and
// exec/attach into pods.
const bypassPolicy = `
roles:
  - name: eng
    groups: [engineering]
    targets: {names: [prod-k8s]}
kubernetes:
  block:
    - {verbs: [delete, deletecollection, patch, update], resources: [namespaces]}
    - {verbs: [create], resources: [pods/exec, pods/attach]}
`

type bypassCase struct {
	name, method, path string
	hdr                map[string]string
	body               string
	want               int
	limit              string // why a request that gets through is not a bypass
}

// kubeBypassCases are requests that try to get a blocked operation past
// the classifier. Paths are sent exactly as written (no client cleaning).
var kubeBypassCases = []bypassCase{
	{name: "plain delete", method: "DELETE", path: "/api/v1/namespaces/prod", want: 403},
	{name: "trailing slash", method: "DELETE", path: "/api/v1/namespaces/prod/", want: 403},
	{name: "percent-encoded name", method: "DELETE", path: "/api/v1/namespaces/%70%72%6f%64", want: 403},
	{name: "percent-encoded resource", method: "DELETE", path: "/api/v1/%6eamespaces/prod", want: 403},
	{name: "resource case", method: "DELETE", path: "/api/v1/NAMESPACES/prod", want: 403},
	{name: "dry-run", method: "DELETE", path: "/api/v1/namespaces/prod?dryRun=All", want: 403},
	{name: "grace period and propagation", method: "DELETE", path: "/api/v1/namespaces/prod?gracePeriodSeconds=0&propagationPolicy=Background", want: 403},
	{name: "deletecollection", method: "DELETE", path: "/api/v1/namespaces?labelSelector=team%3Da", want: 403},
	{name: "name with semicolon", method: "DELETE", path: "/api/v1/namespaces/prod;x=1", want: 403},
	{name: "update", method: "PUT", path: "/api/v1/namespaces/prod", body: `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"prod"}}`, want: 403},
	{name: "merge patch", method: "PATCH", path: "/api/v1/namespaces/prod", hdr: map[string]string{"Content-Type": "application/merge-patch+json"}, body: `{"metadata":{"labels":{"x":"y"}}}`, want: 403},
	{name: "server-side apply", method: "PATCH", path: "/api/v1/namespaces/prod?fieldManager=x&force=true", hdr: map[string]string{"Content-Type": "application/apply-patch+yaml"}, body: "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {x: y}}\n", want: 403},
	{name: "server-side apply dry-run", method: "PATCH", path: "/api/v1/namespaces/prod?fieldManager=x&dryRun=All", hdr: map[string]string{"Content-Type": "application/apply-patch+yaml"}, body: "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n", want: 403},
	{name: "method override header", method: "POST", path: "/api/v1/namespaces/prod", hdr: map[string]string{"X-HTTP-Method-Override": "DELETE"}, want: 200,
		limit: "kube-apiserver ignores method-override headers: it is a create on a named path, which the real API server answers 405 (TestKubectlEndToEnd)"},
	{name: "lower-case verb", method: "delete", path: "/api/v1/namespaces/prod", want: 400},
	{name: "mixed-case verb", method: "Delete", path: "/api/v1/namespaces/prod", want: 400},
	{name: "double slash", method: "DELETE", path: "/api//v1/namespaces/prod", want: 400},
	{name: "double slash before name", method: "DELETE", path: "/api/v1/namespaces//prod", want: 400},
	{name: "dot segment", method: "DELETE", path: "/api/v1/namespaces/./prod", want: 400},
	{name: "dot-dot segment", method: "DELETE", path: "/api/v1/pods/../namespaces/prod", want: 400},
	{name: "encoded dot-dot", method: "DELETE", path: "/api/v1/pods/%2E%2E/namespaces/prod", want: 400},
	{name: "encoded slash", method: "DELETE", path: "/api/v1/namespaces%2Fprod", want: 400},
	{name: "encoded backslash", method: "DELETE", path: "/api/v1/namespaces/prod%5C", want: 400},
	{name: "exec by GET", method: "GET", path: "/api/v1/namespaces/a/pods/p/exec?command=sh&stdin=true", want: 403},
	{name: "exec by POST", method: "POST", path: "/api/v1/namespaces/a/pods/p/exec?command=sh", want: 403},
	{name: "exec with encoded subresource", method: "POST", path: "/api/v1/namespaces/a/pods/p/%65xec?command=sh", want: 403},
	{name: "attach", method: "POST", path: "/api/v1/namespaces/a/pods/p/attach", want: 403},
	{name: "exec through the proxy subresource", method: "POST", path: "/api/v1/namespaces/a/pods/p/proxy/exec", want: 200,
		limit: "pods/proxy is its own subresource (as in RBAC); block it by name to close it"},
	{name: "finalize subresource", method: "PUT", path: "/api/v1/namespaces/prod/finalize", body: `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"prod"}}`, want: 200,
		limit: "a rule on namespaces does not cover namespaces/finalize, as in RBAC; name the subresource"},
	{name: "watch is not delete", method: "GET", path: "/api/v1/watch/namespaces/prod", want: 200},
}

// TestKubeBypassAttempts sends every case through the forwarder to a fake
// API server and checks that refused requests never reach it and that
// client identity headers never do.
func TestKubeBypassAttempts(t *testing.T) {
	var mu sync.Mutex
	var reached []string
	var leaked []string
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.Method+" "+r.URL.EscapedPath())
		for k := range r.Header {
			if strings.HasPrefix(k, "Impersonate-") && r.Header.Get("Impersonate-User") != "alice" || k == "Authorization" && !strings.Contains(r.Header.Get(k), "upstream") {
				leaked = append(leaked, k+": "+r.Header.Get(k))
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Success"}`)
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, bypassPolicy, alice)
	cases := append(kubeBypassCases, bypassCase{
		name: "impersonation headers from the client", method: "GET", path: "/api/v1/namespaces/prod/secrets",
		hdr: map[string]string{"Impersonate-User": "system:admin", "Impersonate-Group": "system:masters", "Authorization": "Bearer stolen"}, want: 200,
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			before := len(reached)
			mu.Unlock()
			resp := sendRaw(t, e, tc)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: status %d, want %d (limit %q)", tc.method, tc.path, resp.StatusCode, tc.want, tc.limit)
			}
			if tc.want >= 400 {
				decodeStatus(t, resp)
				mu.Lock()
				defer mu.Unlock()
				if len(reached) != before {
					t.Fatalf("refused request reached the API server: %v", reached[before:])
				}
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Fatalf("client identity headers reached the API server: %v", leaked)
	}
}

// sendRaw sends tc with its path exactly as written.
func sendRaw(t *testing.T, e *env, tc bypassCase) *http.Response {
	t.Helper()
	var body io.Reader
	if tc.body != "" {
		body = strings.NewReader(tc.body)
	}
	req, err := http.NewRequest(tc.method, "https://"+e.addr+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	p, q, _ := strings.Cut(tc.path, "?")
	req.URL.Opaque = "//" + e.addr + p
	req.URL.RawQuery = q
	for k, v := range tc.hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", tc.method, tc.path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}
