package kube

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jumpgate/jumpgate/audit"
)

func TestExecUpgradeRelayedAndAudited(t *testing.T) {
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.ProtoMajor != 1 {
			http.Error(w, "want an HTTP/1.1 upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		line, _ := brw.ReadString('\n')
		io.WriteString(conn, "echo:"+line)
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	c, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=echo+hi&container=app&stdin=true HTTP/1.1\r\n"+
		"Host: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	io.WriteString(c, "ping\n")
	got, err := br.ReadString('\n')
	if err != nil || got != "echo:ping\n" {
		t.Fatalf("relayed %q, %v", got, err)
	}
	c.Close()
	waitFor(t, "exec audit", func() bool { return len(e.audit.ofType(audit.KubeRequest)) == 1 })
	d := e.audit.ofType(audit.KubeRequest)[0].Details
	if d["verb"] != "create" || d["subresource"] != "exec" || d["command"] != "sh -c 'echo hi'" || d["container"] != "app" || d["status"] != 101 {
		t.Fatalf("exec audit %v", d)
	}
}

func TestExecCommandPolicy(t *testing.T) {
	pol := testPolicy + "commands:\n  block: ['^\\s*rm\\s+-rf\\b']\n"
	_, upCA := newUpstream(t, func(http.ResponseWriter, *http.Request) { t.Error("blocked exec reached the upstream") })
	e := startForwarder(t, "127.0.0.1:1", upCA, pol, alice)
	resp, err := e.client.Post(e.url("/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command="+strings.ReplaceAll("rm -rf /data", " ", "+")), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d", resp.StatusCode)
	}
	decodeStatus(t, resp)
	b := e.audit.ofType(audit.KubeBlocked)
	if len(b) != 1 || !strings.Contains(b[0].Details["command"].(string), "rm -rf /data") {
		t.Fatalf("blocked audit %+v", b)
	}
}
