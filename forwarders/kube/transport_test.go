package kube

import (
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestUpstreamConnectionReused: requests of several client connections
// (kubectl runs, each its own SSH channel) share one kept-alive HTTP/2
// connection to the API server: no TLS handshake per request or channel.
func TestUpstreamConnectionReused(t *testing.T) {
	var mu sync.Mutex
	conns, protos := 0, map[int]int{}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.ProtoMajor]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(podList)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)
	upCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
	e := startForwarder(t, up.Listener.Addr().String(), upCA, testPolicy, alice)
	for _, h2 := range []bool{true, false, true} {
		c := e.newClient(t, h2)
		for i := 0; i < 5; i++ {
			resp, err := c.Get(e.url("/api/v1/namespaces/default/pods"))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		c.Transport.(*http.Transport).CloseIdleConnections()
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 || protos[2] != 15 {
		t.Fatalf("upstream saw %d connections and protocols %v, want 1 connection of HTTP/2", conns, protos)
	}
}
