package kube

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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

// dialUpgrade opens a TLS connection to the forwarder, asks for an
// upgrade of path and returns the connection after the 101.
func dialUpgrade(t *testing.T, e *env, path, proto string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	c, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: "+proto+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return c, br
}

// hijack101 takes over an upgrade request on the fake API server.
func hijack101(w http.ResponseWriter, proto string) (net.Conn, *bufio.ReadWriter, bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, false
	}
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+proto+"\r\n\r\n")
	return conn, brw, true
}

// TestUpgradeHalfClose: the client sends its input and half-closes; the
// API server answers only after reading that EOF, and the whole answer
// must still reach the client (a proxy that closes both sides on the
// first EOF loses it).
func TestUpgradeHalfClose(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, ok := hijack101(w, "SPDY/3.1")
		if !ok {
			return
		}
		defer conn.Close()
		in, err := io.ReadAll(brw) // until the client's half-close
		if err != nil {
			t.Errorf("upstream read: %v", err)
			return
		}
		io.WriteString(conn, "got:"+string(in)+"\n")
		conn.Write(payload)
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	c, br := dialUpgrade(t, e, "/api/v1/namespaces/default/pods/p/exec?command=cat&stdin=true", "SPDY/3.1")
	io.WriteString(c, "hello")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read after half-close: %v (%d bytes)", err, len(got))
	}
	want := append([]byte("got:hello\n"), payload...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes (%q...), want %d", len(got), got[:min(len(got), 20)], len(want))
	}
}

// TestUpgradeCancelClosesBoth: when the forwarder is shut down, an idle
// upgraded stream is closed on both ends.
func TestUpgradeCancelClosesBoth(t *testing.T) {
	upClosed := make(chan error, 1)
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, ok := hijack101(w, "SPDY/3.1")
		if !ok {
			return
		}
		defer conn.Close()
		_, err := io.ReadAll(brw)
		upClosed <- err
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	c, br := dialUpgrade(t, e, "/api/v1/namespaces/default/pods/p/portforward?ports=80", "SPDY/3.1")
	e.cancel()
	if _, err := io.ReadAll(br); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("client side ended with %v", err)
	}
	select {
	case <-upClosed:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream side was not closed")
	}
	_ = c
}

// TestUpgradeRefusedPassedOn: an API server that answers the upgrade with
// an error has it relayed as an ordinary response.
func TestUpgradeRefusedPassedOn(t *testing.T) {
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Impersonate-User") != "alice" || r.Header.Get("Authorization") != "Bearer upstream-token" {
			t.Errorf("upstream headers %v", r.Header)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"kind":"Status","code":403}`)
	})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	req, _ := http.NewRequest("GET", e.url("/api/v1/namespaces/default/pods/p/exec?command=ls"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Authorization", "Bearer client-claims")
	resp, err := e.newClient(t, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `"code":403`) {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	waitFor(t, "audit", func() bool { return len(e.audit.ofType(audit.KubeRequest)) == 1 })
	if d := e.audit.ofType(audit.KubeRequest)[0].Details; d["status"] != http.StatusForbidden {
		t.Fatalf("audit %v", d)
	}
}
