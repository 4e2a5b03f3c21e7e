package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage/boltstore"
)

// podList is a small JSON answer of a fake API server (a list of pods).
var podList = []byte(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"42"},"items":[` +
	`{"metadata":{"name":"web-0","namespace":"default"},"spec":{"containers":[{"name":"web","image":"registry.example/web:1"}]},"status":{"phase":"Pending"}},` +
	`{"metadata":{"name":"web-1","namespace":"default"},"spec":{"containers":[{"name":"web","image":"registry.example/web:1"}]},"status":{"phase":"Pending"}}]}`)

// BenchmarkGet measures one GET of a pod list through the forwarder, one
// request at a time on a kept-alive HTTP/2 connection (what kubectl does),
// against a fake API server on loopback. "bolt" audits kube.request to a
// real boltstore audit log (what `jumpgate server` does), "memory" to an
// in-memory sink. Profile with -cpuprofile.
func BenchmarkGet(b *testing.B) {
	for _, store := range []string{"memory", "bolt"} {
		b.Run(store, func(b *testing.B) {
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(podList)
			}))
			up.EnableHTTP2 = true
			up.StartTLS()
			b.Cleanup(up.Close)
			upCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
			var aud Auditor = &fakeAudit{}
			if store == "bolt" {
				st, err := boltstore.Open(filepath.Join(b.TempDir(), "jumpgate.db"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				aud = audit.New(st, nil, slog.New(slog.DiscardHandler))
			}
			addr, caPEM := serveForBench(b, up.Listener.Addr().String(), upCA, aud)
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(caPEM)
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, ForceAttemptHTTP2: true}
			b.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			get := func() {
				resp, err := c.Get("https://" + addr + "/api/v1/namespaces/default/pods")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %s", resp.Status)
				}
			}
			get()
			b.ResetTimer()
			for b.Loop() {
				get()
			}
		})
	}
}

// serveForBench runs a forwarder on a loopback listener (one Serve per
// connection) until the benchmark ends; it returns the address and the
// forwarder's CA.
func serveForBench(b *testing.B, upstreamAddr string, upstreamCA []byte, aud Auditor) (string, []byte) {
	dir := b.TempDir()
	ca, err := LoadOrCreateCA(context.Background(), dir, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := policy.Parse([]byte(`
roles:
  - name: eng
    groups: [engineering]
    targets: {names: [prod-k8s]}
kubernetes:
  block: [{verbs: [delete], resources: [namespaces]}]
  mask: [{resources: [secrets], fields: [data, stringData]}]
`))
	if err != nil {
		b.Fatal(err)
	}
	tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "upstream-ca.crt")
	if err := os.WriteFile(tokenFile, []byte("upstream-token\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(caFile, upstreamCA, 0o600); err != nil {
		b.Fatal(err)
	}
	f := New(Config{Policy: policy.Static(p), Audit: aud, CA: ca, Logger: slog.New(slog.DiscardHandler)})
	tgt := config.Target{Name: "prod-k8s", Kind: "kubernetes", Address: upstreamAddr, CAFile: caFile,
		Credentials: config.Credentials{TokenFile: tokenFile}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = f.Serve(ctx, c.(*net.TCPConn), alice, tgt)
			}()
		}
	}()
	b.Cleanup(func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
		f.Close()
	})
	return ln.Addr().String(), ca.PEM()
}
