package test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/kubetest"
)

const kubeExecPolicy = `
roles:
  - name: eng
    groups: [engineering]
    targets: {names: [prod-k8s]}
commands:
  block: ['^\s*rm\b']
auditors: [{groups: [security]}]
`

// TestKubectlExecThroughBastion: the real kubectl runs `kubectl exec`
// through `ssh -L` and the Kubernetes forwarder against a real
// kube-apiserver, which streams to the fakekubelet (the kubelet's CRI
// streaming server; the command runs as a local process there). Over
// WebSocket (kubectl's default) and SPDY (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false)
// alike: output and stdin pass, the command is audited, a blocked command
// is refused with a readable message, and the exec is recorded (stdin and
// stdout) and exported and replayed by the jumpgate CLI.
func TestKubectlExecThroughBastion(t *testing.T) {
	k := startPodThroughBastion(t)
	srv, kubectl := k.srv, k.run

	sessionsOf := func(t *testing.T) []storage.Session {
		var ss []storage.Session
		out := srv.MustJG(t, "sessions", "list", "--json")
		if err := json.Unmarshal([]byte(out), &ss); err != nil {
			t.Fatalf("sessions json: %v\n%s", err, out)
		}
		return ss
	}
	// ended returns the ended kube-exec session running command and its
	// session.end event, waiting for both.
	ended := func(t *testing.T, command string, seen map[string]bool) (storage.Session, audit.Event) {
		t.Helper()
		var s storage.Session
		var end audit.Event
		harness.WaitFor(t, 60*time.Second, "the session of "+command, func() bool {
			for _, x := range sessionsOf(t) {
				if x.Kind == "kube-exec" && x.Command == command && x.Status == storage.SessionEnded && !seen[x.ID] {
					var evs []audit.Event
					json.Unmarshal([]byte(srv.MustJG(t, "audit", "list", "--json", "--type", audit.SessionEnd)), &evs)
					for _, e := range evs {
						if e.Session == x.ID {
							s, end = x, e
							seen[x.ID] = true
							return true
						}
					}
				}
			}
			return false
		})
		return s, end
	}
	seen := map[string]bool{}

	for _, tc := range []struct{ name, websockets, protocol string }{
		{"WebSocket", "true", "v5.channel.k8s.io"},
		{"SPDY", "false", "v4.channel.k8s.io"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := time.Now()
			out, err := kubectl(tc.websockets, "", "exec", "box", "--", "echo", "hello")
			if err != nil || strings.TrimSpace(out) != "hello" {
				t.Fatalf("exec echo: %v %q", err, out)
			}
			t.Logf("kubectl exec echo took %v", time.Since(started))
			s, end := ended(t, "echo hello", seen)
			if end.Details["recording_error"] != nil || end.Details["sha256"] == nil || end.Details["signature"] == nil {
				t.Fatalf("session.end %v", end.Details)
			}
			if cast := srv.MustJG(t, "sessions", "export", s.ID); !strings.Contains(cast, `"o", "hello`) && !strings.Contains(cast, `"o","hello`) {
				t.Fatalf("export of %s:\n%s", s.ID, cast)
			}

			out, err = kubectl(tc.websockets, "ping-from-stdin\n", "exec", "-i", "box", "--", "cat")
			if err != nil || out != "ping-from-stdin\n" {
				t.Fatalf("exec -i cat: %v %q", err, out)
			}
			s, _ = ended(t, "cat", seen)
			cast := srv.MustJG(t, "sessions", "export", s.ID)
			var in, o int
			for _, line := range strings.Split(cast, "\n")[1:] {
				var ev []any
				if json.Unmarshal([]byte(line), &ev) != nil || len(ev) != 3 {
					continue
				}
				if ev[1] == "i" && strings.Contains(ev[2].(string), "ping-from-stdin") {
					in++
				}
				if ev[1] == "o" && strings.Contains(ev[2].(string), "ping-from-stdin") {
					o++
				}
			}
			if in == 0 || o == 0 {
				t.Fatalf("recording of cat lacks stdin or stdout:\n%s", cast)
			}
			if replay := srv.MustJG(t, "replay", s.ID, "--speed", "100"); !strings.Contains(replay, "ping-from-stdin") {
				t.Fatalf("replay: %q", replay)
			}
			var starts []audit.Event
			json.Unmarshal([]byte(srv.MustJG(t, "audit", "list", "--json", "--type", audit.SessionStart)), &starts)
			for _, e := range starts {
				if e.Session == s.ID && e.Details["protocol"] != tc.protocol {
					t.Fatalf("session.start %v, want protocol %s", e.Details, tc.protocol)
				}
			}

			// An interactive shell on a TTY, resized while it runs.
			t.Setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", tc.websockets)
			t.Setenv("HOME", k.home)
			t.Setenv("KUBECONFIG", "")
			term := harness.StartTerminal(t, kubetest.KubectlPath(), k.args("exec", "-it", "box", "--", "sh")...)
			term.Type("stty size; echo tty-$((6*7))\r")
			harness.WaitFor(t, 60*time.Second, "the shell's answer", term.Seen("tty-42"))
			if !strings.Contains(term.Output(), "40 120") {
				t.Fatalf("terminal size not passed: %q", term.Output())
			}
			term.Resize(132, 50)
			harness.WaitFor(t, 60*time.Second, "the resize", func() bool {
				term.Type("stty size\r")
				time.Sleep(200 * time.Millisecond)
				return strings.Contains(term.Output(), "50 132")
			})
			term.Type("exit\r")
			term.Wait(t, 60*time.Second)
			s, _ = ended(t, "sh", seen)
			cast = srv.MustJG(t, "sessions", "export", s.ID)
			if !strings.Contains(cast, "tty-42") || !strings.Contains(cast, `"r"`) || !strings.Contains(cast, "132x50") {
				t.Fatalf("recording of the TTY exec:\n%s", cast)
			}

			out, err = kubectl(tc.websockets, "", "exec", "box", "--", "rm", "-rf", "/tmp/nothing-"+tc.name)
			if err == nil || !strings.Contains(out, "blocked by policy") {
				t.Fatalf("exec rm: %v %q", err, out)
			}
			t.Logf("kubectl exec rm: %s", strings.TrimSpace(out))
		})
	}

	// The audit log names each command, the blocked one included.
	var evs []audit.Event
	json.Unmarshal([]byte(srv.MustJG(t, "audit", "list", "--json", "--type", "kube.")), &evs)
	var execs, blocked int
	for _, e := range evs {
		if e.Details["subresource"] != "exec" {
			continue
		}
		switch cmd, _ := e.Details["command"].(string); {
		case e.Type == audit.KubeRequest && (cmd == "echo hello" || cmd == "cat"):
			execs++
		case e.Type == audit.KubeBlocked && strings.HasPrefix(cmd, "rm -rf"):
			blocked++
		}
	}
	// kubectl retries a refused WebSocket exec over SPDY, so the WebSocket
	// case may be refused twice.
	if execs != 4 || blocked < 2 {
		t.Fatalf("audit: %d kube.request exec events (want 4), %d kube.blocked (want 2 or more)", execs, blocked)
	}
}

// podKubectl runs the real kubectl as alice through `ssh -L` and the
// bastion to a cluster whose pod default/box runs on the fakekubelet.
type podKubectl struct {
	srv      *harness.Server
	kc, home string
}

// startPodThroughBastion starts the kube-apiserver, the fakekubelet, the
// pod box and a bastion whose policy is kubeExecPolicy.
func startPodThroughBastion(t *testing.T) podKubectl {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real kube-apiserver")
	}
	if _, err := os.Stat(kubetest.KubectlPath()); err != nil {
		t.Skip("kubectl not installed")
	}
	c := kubetest.Start(t)
	c.StartKubelet(t)
	c.RunPod(t, "default", "box")
	c.Kubectl(t, "", "create", "clusterrolebinding", "alice-admin", "--clusterrole=cluster-admin", "--user=alice@example.com")
	srv, kc := kubeThroughBastion(t, c, kubeExecPolicy)
	return podKubectl{srv: srv, kc: kc, home: t.TempDir()}
}

// args puts kubeconfig and context before args.
func (k podKubectl) args(args ...string) []string {
	return append([]string{"--kubeconfig", k.kc, "--context", "jumpgate-prod-k8s"}, args...)
}

// run runs kubectl with stdin; websockets "false" makes it use SPDY.
func (k podKubectl) run(websockets, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubetest.KubectlPath(), k.args(args...)...)
	cmd.Env = append(os.Environ(), "HOME="+k.home, "KUBECONFIG=", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS="+websockets)
	cmd.Stdin = strings.NewReader(stdin)
	b, err := cmd.CombinedOutput()
	return string(b), err
}
