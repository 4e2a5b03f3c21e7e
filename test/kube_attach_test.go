package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/kubetest"
)

// TestKubectlAttachAndPortForwardThroughBastion: the real `kubectl attach
// -i` through `ssh -L` and the Kubernetes forwarder reaches the pod's main
// process (the fakekubelet's stand-in runtime runs a sh per container),
// over WebSocket and SPDY; stdin and output pass, and the attach is
// recorded (kube-attach session, exported by the CLI) and audited. The
// real `kubectl port-forward` reaches an echo server the test runs (the
// fakekubelet dials the pod's ports on 127.0.0.1) and leaves a
// forward.end event with its byte counts.
func TestKubectlAttachAndPortForwardThroughBastion(t *testing.T) {
	k := startPodThroughBastion(t)
	srv, kubectl, kargs, home := k.srv, k.run, k.args, k.home
	events := func(t *testing.T, typ string) []audit.Event {
		var evs []audit.Event
		if err := json.Unmarshal([]byte(srv.MustJG(t, "audit", "list", "--json", "--type", typ)), &evs); err != nil {
			t.Fatalf("audit json: %v", err)
		}
		return evs
	}
	seen := map[string]bool{}

	for _, tc := range []struct{ name, websockets string }{{"WebSocket", "true"}, {"SPDY", "false"}} {
		t.Run("attach/"+tc.name, func(t *testing.T) {
			started := time.Now()
			word := "attached-" + strings.ToLower(tc.name)
			out, err := kubectl(tc.websockets, "echo "+word+"-$((6*7))\n", "attach", "-q", "-i", "box")
			if err != nil || !strings.Contains(out, word+"-42") {
				t.Fatalf("attach: %v %q", err, out)
			}
			t.Logf("kubectl attach took %v", time.Since(started))
			var s storage.Session
			var end audit.Event
			harness.WaitFor(t, 60*time.Second, "the attach session", func() bool {
				var ss []storage.Session
				_ = json.Unmarshal([]byte(srv.MustJG(t, "sessions", "list", "--json")), &ss)
				for _, x := range ss {
					if x.Kind != "kube-attach" || x.Status != storage.SessionEnded || seen[x.ID] {
						continue
					}
					for _, e := range events(t, audit.SessionEnd) {
						if e.Session == x.ID {
							s, end, seen[x.ID] = x, e, true
							return true
						}
					}
				}
				return false
			})
			if end.Details["recording_error"] != nil || end.Details["sha256"] == nil || end.Details["kind"] != "kube-attach" {
				t.Fatalf("session.end %v", end.Details)
			}
			cast := srv.MustJG(t, "sessions", "export", s.ID)
			if !strings.Contains(cast, "kubectl attach pod box -n default") || !strings.Contains(cast, word+"-42") ||
				!strings.Contains(cast, `$((6*7))`) {
				t.Fatalf("export of %s:\n%s", s.ID, cast)
			}
		})
	}
	var attaches int
	for _, e := range events(t, audit.KubeRequest) {
		if e.Details["subresource"] == "attach" && e.Details["exec_session"] != nil {
			attaches++
		}
	}
	if attaches != 2 {
		t.Fatalf("%d kube.request attach events with their session, want 2", attaches)
	}

	t.Run("port-forward", func(t *testing.T) {
		// The echo server stands for the pod's port: the fakekubelet dials
		// it on 127.0.0.1.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		t.Cleanup(func() { l.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.Close()
					_, _ = io.Copy(conn, conn)
				}()
			}
		}()
		podPort := l.Addr().(*net.TCPAddr).Port
		local := harness.FreePort(t)
		_, lport, _ := net.SplitHostPort(local)
		pf := harness.Start(t, []string{"HOME=" + home, "KUBECONFIG="}, kubetest.KubectlPath(), kargs("port-forward", "pod/box", fmt.Sprintf("%s:%d", lport, podPort))...)
		harness.WaitFor(t, 60*time.Second, "kubectl port-forward", func() bool { return strings.Contains(pf.Out.String(), "Forwarding from") })
		conn, err := net.Dial("tcp", local)
		if err != nil {
			t.Fatal(err)
		}
		msg := "through-the-port-forward\n"
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || got != msg {
			t.Fatalf("echo through port-forward: %v %q\n%s", err, got, pf.Out.String())
		}
		if err := pf.Stop(10 * time.Second); err != nil {
			t.Logf("kubectl port-forward: %v", err)
		}
		var end audit.Event
		harness.WaitFor(t, 60*time.Second, "the port-forward's forward.end", func() bool {
			for _, e := range events(t, audit.ForwardEnd) {
				if e.Details["kind"] == "kube-portforward" {
					end = e
					return true
				}
			}
			return false
		})
		in, _ := end.Details["bytes_in"].(float64)
		out, _ := end.Details["bytes_out"].(float64)
		if in < float64(len(msg)) || out < float64(len(msg)) || end.Details["pod"] != "pod box -n default" || end.Details["duration"] == nil {
			t.Fatalf("forward.end %v", end.Details)
		}
		t.Logf("forward.end %v", end.Details)
	})
}
