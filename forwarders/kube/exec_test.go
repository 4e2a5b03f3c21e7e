package kube

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/storage"
)

type fakeSessions struct {
	mu   sync.Mutex
	puts []storage.Session
}

func (s *fakeSessions) PutSession(_ context.Context, x storage.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts = append(s.puts, x)
	return nil
}

func (s *fakeSessions) all() []storage.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]storage.Session(nil), s.puts...)
}

var execDay = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// upgradeRequest opens a TLS connection to the forwarder and sends an
// upgrade request with extra header lines; it returns the response.
func upgradeRequest(t *testing.T, e *env, path, proto, extra string) (*tls.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	c, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: "+proto+"\r\n"+extra+"\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, br, resp
}

// TestExecRecorded runs a WebSocket exec (v5.channel.k8s.io) against a
// fake API server: the bytes are relayed unchanged both ways, and stdin,
// stdout, stderr and the resize are in a signed recording announced by
// session.start and session.end.
func TestExecRecorded(t *testing.T) {
	mask := []byte{9, 8, 7, 6}
	var fromClient bytes.Buffer
	fromClient.Write(wsFrame(true, 2, mask, chanMsg(chanResize, `{"Width":120,"Height":40}`)))
	fromClient.Write(wsFrame(true, 2, mask, chanMsg(chanStdin, "echo hello\n")))
	var fromServer bytes.Buffer
	fromServer.Write(wsFrame(true, 2, nil, chanMsg(chanStdout, "hello\n")))
	fromServer.Write(wsFrame(true, 2, nil, chanMsg(chanStderr, "warning\n")))
	fromServer.Write(wsFrame(true, 2, nil, chanMsg(chanError, `{"metadata":{},"status":"Success"}`)))
	fromServer.Write(wsFrame(true, 8, nil, []byte{3, 232}))

	upGot := make(chan []byte, 1)
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Sec-WebSocket-Protocol") != "v5.channel.k8s.io, v4.channel.k8s.io" {
			t.Errorf("protocols %q", r.Header.Get("Sec-WebSocket-Protocol"))
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n")
		got := make([]byte, fromClient.Len())
		_, err = io.ReadFull(brw, got)
		upGot <- got
		if err == nil {
			conn.Write(fromServer.Bytes())
		}
	})
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(nil)
	sessions := &fakeSessions{}
	e := startForwarderCfg(t, up.Listener.Addr().String(), upCA, "upstream-token", testPolicy, alice, func(c *Config) {
		c.RecordingsDir, c.AuditKey, c.Sessions, c.FailClosed = dir, priv, sessions, true
		c.Clock = func() time.Time { return execDay }
		c.NewID = func() string { return "k-test1" }
	})
	c, br, resp := upgradeRequest(t, e, "/api/v1/namespaces/default/pods/web/exec?command=sh&container=app&stdin=true&stdout=true&stderr=true&tty=true",
		"websocket", "Sec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io\r\n")
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != "v5.channel.k8s.io" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	c.Write(fromClient.Bytes())
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, fromServer.Bytes()) {
		t.Fatalf("client got %q", got)
	}
	c.Close() // as kubectl does once the API server has closed its side
	if g := <-upGot; !bytes.Equal(g, fromClient.Bytes()) {
		t.Fatalf("API server got %q", g)
	}

	waitFor(t, "session.end", func() bool { return len(e.audit.ofType(audit.SessionEnd)) == 1 })
	const file = "2026-03-04/k-test1.cast"
	start := e.audit.ofType(audit.SessionStart)
	if len(start) != 1 || start[0].Session != "k-test1" || start[0].Details["kind"] != SessionKindExec ||
		start[0].Details["command"] != "sh" || start[0].Details["recording"] != file || start[0].Details["channel"] != alice.ID {
		t.Fatalf("session.start %+v", start)
	}
	end := e.audit.ofType(audit.SessionEnd)[0]
	d := end.Details
	raw, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if d["sha256"] != hex.EncodeToString(sum[:]) || d["recording"] != file || d["command"] != "sh" || d["recording_error"] != nil {
		t.Fatalf("session.end %v", d)
	}
	if err := recorder.Verify(pub, d["sha256"].(string), "k-test1", d["signature"].(string)); err != nil {
		t.Fatalf("signature: %v", err)
	}
	waitFor(t, "request audit", func() bool { return len(e.audit.ofType(audit.KubeRequest)) == 1 })
	if rd := e.audit.ofType(audit.KubeRequest)[0].Details; rd["exec_session"] != "k-test1" || rd["status"] != 101 {
		t.Fatalf("request audit %v", rd)
	}
	puts := sessions.all()
	if len(puts) != 2 || puts[0].Status != storage.SessionRunning || puts[1].Status != storage.SessionEnded ||
		puts[1].Recording != file || puts[1].SHA256 != d["sha256"] || puts[1].Signature != d["signature"] || puts[1].Kind != SessionKindExec {
		t.Fatalf("session index %+v", puts)
	}

	rec, err := recorder.Open(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	var in, out strings.Builder
	var resized bool
	for {
		ev, err := rec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case recorder.EventInput:
			in.WriteString(ev.Data)
		case recorder.EventOutput:
			out.WriteString(ev.Data)
		case recorder.EventResize:
			cols, rows, ok := ev.Size()
			resized = ok && cols == 120 && rows == 40
		}
	}
	if in.String() != "echo hello\n" || out.String() != "hello\nwarning\n" || !resized {
		t.Fatalf("recording: input %q, output %q, resized %v", in.String(), out.String(), resized)
	}
	if rec.Header.Command != "sh" || rec.Header.Env["TERM"] == "" {
		t.Fatalf("header %+v", rec.Header)
	}
}

// TestExecFailClosed: with FailClosed, an exec or attach that cannot be
// recorded is refused with a 503 Status before anything reaches the API
// server; without it, it is relayed unrecorded and still announced.
func TestExecFailClosed(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		dir        string
		proto      string
		failClosed bool
		want       int
		sub        string // "exec" when empty
	}{
		{"attach no dir", "", "websocket", true, http.StatusServiceUnavailable, "attach"},
		{"attach SPDY unwritable dir", notADir, "SPDY/3.1", true, http.StatusServiceUnavailable, "attach"},
		{"attach SPDY recorded", t.TempDir(), "SPDY/3.1", true, http.StatusSwitchingProtocols, "attach"},
		{"attach fail open", "", "websocket", false, http.StatusSwitchingProtocols, "attach"},
		{"unwritable dir", notADir, "websocket", true, http.StatusServiceUnavailable, ""},
		{"no dir", "", "websocket", true, http.StatusServiceUnavailable, ""},
		{"SPDY no dir", "", "SPDY/3.1", true, http.StatusServiceUnavailable, ""},
		{"SPDY recorded", t.TempDir(), "SPDY/3.1", true, http.StatusSwitchingProtocols, ""},
		{"unknown protocol", t.TempDir(), "h2c", true, http.StatusServiceUnavailable, ""},
		{"SPDY fail open", "", "SPDY/3.1", false, http.StatusSwitchingProtocols, ""},
		{"unwritable dir fail open", notADir, "websocket", false, http.StatusSwitchingProtocols, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reached bool
			var mu sync.Mutex
			up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				reached = true
				mu.Unlock()
				conn, _, ok := hijack101(w, tc.proto)
				if ok {
					conn.Close()
				}
			})
			pol := testPolicy
			if tc.sub == "attach" { // testPolicy blocks pods/attach
				pol = strings.Replace(testPolicy, ", {verbs: [create], resources: [pods/attach]}", "", 1)
			}
			e := startForwarderCfg(t, up.Listener.Addr().String(), upCA, "upstream-token", pol, alice, func(c *Config) {
				c.RecordingsDir, c.FailClosed = tc.dir, tc.failClosed
			})
			path := "/api/v1/namespaces/default/pods/web/exec?command=id&stdout=true"
			if tc.sub == "attach" {
				path = "/api/v1/namespaces/default/pods/web/attach?stdin=true&stdout=true"
			}
			c, br, resp := upgradeRequest(t, e, path, tc.proto, "")
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusServiceUnavailable {
				if st := decodeStatus(t, resp); st.Code != http.StatusServiceUnavailable {
					t.Fatalf("Status %+v", st)
				}
				mu.Lock()
				defer mu.Unlock()
				if reached {
					t.Fatal("a refused exec reached the API server")
				}
				if b := e.audit.ofType(audit.KubeBlocked); len(b) != 1 || b[0].Details["status"] != http.StatusServiceUnavailable {
					t.Fatalf("blocked audit %+v", b)
				}
				return
			}
			io.ReadAll(br)
			c.Close()
			waitFor(t, "session.end", func() bool { return len(e.audit.ofType(audit.SessionEnd)) == 1 })
			recorded := strings.HasSuffix(tc.name, "SPDY recorded")
			wantKind := SessionKindExec
			if tc.sub == "attach" {
				wantKind = SessionKindAttach
			}
			if s := e.audit.ofType(audit.SessionStart); len(s) != 1 || (s[0].Details["recording"] != "") != recorded || s[0].Details["kind"] != wantKind {
				t.Fatalf("session.start %+v", s)
			}
		})
	}
}
