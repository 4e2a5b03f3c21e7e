// Command fakekubelet is the streaming half of a kubelet for jumpgate's
// tests: the API server's exec, attach and port-forward requests to a node
// land here, so that a real `kubectl exec` works against the test
// kube-apiserver (cmd/kube-apiserver) without a container runtime.
//
// The HTTP, SPDY and WebSocket side is the kubelet's own CRI streaming
// server (k8s.io/kubelet/pkg/cri/streaming), reached the way the kubelet
// reaches it: /exec/{namespace}/{pod}/{container}?command=... is turned
// into a CRI ExecRequest, the streaming server hands out a one-time URL
// and serves it. Only the runtime behind it is a stand-in: Exec runs the
// command as a local process of this program (in a PTY when a TTY is
// asked for) instead of inside a container; Attach connects to a `sh` the
// stand-in runtime starts for the container on its first attach and keeps
// running (the container's main process); PortForward dials the port on
// 127.0.0.1.
//
// It serves TLS with a certificate signed by the kubelet CA the API server
// wrote into -dir (kubelet-ca.crt, kubelet-ca.key) and requires the API
// server's client certificate signed by that CA, like a kubelet with
// client-certificate authentication. Once listening it writes
// {"port":N} to the file named by -ready, and runs until SIGTERM or SIGINT.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/kubelet/pkg/cri/streaming"
	utilexec "k8s.io/utils/exec"
)

func main() {
	dir := flag.String("dir", "", "the API server's state directory (kubelet-ca.crt, kubelet-ca.key)")
	ready := flag.String("ready", "", "file to write the ready JSON to")
	flag.Parse()
	if *dir == "" || *ready == "" {
		log.Fatal("fakekubelet: -dir and -ready are required")
	}
	if err := run(*dir, *ready); err != nil {
		log.Fatalf("fakekubelet: %v", err)
	}
}

func run(dir, ready string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	tlsCfg, err := tlsConfig(dir)
	if err != nil {
		return err
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = "127.0.0.1:0"
	// The streaming server is served in process under /cri/; its own
	// listener (Start) is not used.
	cfg.BaseURL = &url.URL{Scheme: "https", Host: "127.0.0.1", Path: "/cri/"}
	rt := &localRuntime{}
	defer rt.wg.Wait()
	defer rt.stop()
	srv, err := streaming.NewServer(cfg, rt)
	if err != nil {
		return fmt.Errorf("streaming server: %w", err)
	}
	k := &kubelet{cri: srv}
	mux := http.NewServeMux()
	mux.Handle("/cri/", srv)
	mux.HandleFunc("/exec/{namespace}/{pod}/{container}", k.exec)
	mux.HandleFunc("/attach/{namespace}/{pod}/{container}", k.attach)
	mux.HandleFunc("/portForward/{namespace}/{pod}", k.portForward)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(l, "", "") }()

	out, _ := json.Marshal(map[string]int{"port": l.Addr().(*net.TCPAddr).Port})
	if err := os.WriteFile(ready+".tmp", append(out, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Rename(ready+".tmp", ready); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		_ = hs.Close()
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
}

// kubelet turns the API server's node URLs into CRI streaming requests,
// as the kubelet's server does (pkg/kubelet/server: getExec and friends).
type kubelet struct {
	cri streaming.Server
}

func containerID(r *http.Request) string {
	return r.PathValue("namespace") + "/" + r.PathValue("pod") + "/" + r.PathValue("container")
}

// serveCRI serves the one-time streaming URL in process, or the error of
// the request for it.
func (k *kubelet) serveCRI(w http.ResponseWriter, r *http.Request, rawURL string, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath, r2.RequestURI = u.Path, "", u.RequestURI()
	k.cri.ServeHTTP(w, r2)
}

func flagSet(r *http.Request, name string) bool { return r.FormValue(name) == "1" }

func (k *kubelet) exec(w http.ResponseWriter, r *http.Request) {
	// The API server's parameter names (k8s.io/api/core/v1 Exec*Param).
	resp, err := k.cri.GetExec(&runtimeapi.ExecRequest{
		ContainerId: containerID(r),
		Cmd:         r.URL.Query()["command"],
		Tty:         flagSet(r, "tty"),
		Stdin:       flagSet(r, "input"),
		Stdout:      flagSet(r, "output"),
		Stderr:      flagSet(r, "error"),
	})
	k.serveCRI(w, r, resp.GetUrl(), err)
}

func (k *kubelet) attach(w http.ResponseWriter, r *http.Request) {
	resp, err := k.cri.GetAttach(&runtimeapi.AttachRequest{
		ContainerId: containerID(r),
		Tty:         flagSet(r, "tty"),
		Stdin:       flagSet(r, "input"),
		Stdout:      flagSet(r, "output"),
		Stderr:      flagSet(r, "error"),
	})
	k.serveCRI(w, r, resp.GetUrl(), err)
}

func (k *kubelet) portForward(w http.ResponseWriter, r *http.Request) {
	resp, err := k.cri.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: r.PathValue("namespace") + "/" + r.PathValue("pod")})
	k.serveCRI(w, r, resp.GetUrl(), err)
}

// localRuntime is the stand-in container runtime: commands run as local
// processes of this program.
type localRuntime struct {
	// wg owns the PTY stdin copiers, which can outlive their Exec (they
	// end when the streaming server closes the client's stdin stream);
	// run waits for them on shutdown.
	wg sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*container // attach's main processes, by container ID
	procs      []*exec.Cmd
}

func (rt *localRuntime) Exec(ctx context.Context, _ string, argv []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if len(argv) == 0 {
		return errors.New("fakekubelet: no command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp"}
	if tty {
		cmd.Env = append(cmd.Env, "TERM=xterm")
		return exitError(rt.runPTY(cmd, in, out, resize))
	}
	if in != nil {
		cmd.Stdin = in
	}
	cmd.Stdout, cmd.Stderr = out, errw
	if errw == nil {
		cmd.Stderr = out
	}
	// A stdin copier blocked on a client that never closes stdin must not
	// hold the exec open after the command has exited.
	cmd.WaitDelay = 2 * time.Second
	return exitError(cmd.Run())
}

// runPTY runs cmd on a new PTY: stdin is copied in, the terminal's output
// out, resize events applied. It returns when the command has exited and
// its output is drained.
func (rt *localRuntime) runPTY(cmd *exec.Cmd, in io.Reader, out io.Writer, resize <-chan remotecommand.TerminalSize) error {
	f, err := pty.Start(cmd)
	if err != nil {
		return fmt.Errorf("fakekubelet: pty: %w", err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() { // resize events until the command ends
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case sz, ok := <-resize:
				if !ok {
					return
				}
				_ = pty.Setsize(f, &pty.Winsize{Rows: sz.Height, Cols: sz.Width})
			}
		}
	}()
	if in != nil {
		// Owned by rt.wg: it may stay blocked in in.Read after the
		// command exits, until the client's stdin stream is closed.
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			_, _ = io.Copy(f, in)
		}()
	}
	_, _ = io.Copy(out, f) // until EIO: the command and its children closed the terminal
	err = cmd.Wait()
	close(done)
	wg.Wait()
	_ = f.Close()
	return err
}

// exitError turns an exit status into the error the streaming server
// reports as the command's exit code.
func exitError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return utilexec.CodeExitError{Err: err, Code: ee.ExitCode()}
	}
	return err
}

// Attach connects to the container's main process: in this stand-in
// runtime, a `sh` started for containerID on its first attach and kept
// running until the kubelet stops. One attach at a time gets its output.
// When the client's stdin ends, Attach asks the shell to echo a marker
// and returns once the marker comes back, so every line the client's
// input produced has been passed on before the attach ends.
func (rt *localRuntime) Attach(_ context.Context, containerID string, in io.Reader, out, _ io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize) error {
	c, err := rt.container(containerID)
	if err != nil {
		return err
	}
	c.attachMu.Lock() // one attach at a time
	defer c.attachMu.Unlock()
	marker := fmt.Sprintf("fakekubelet-attach-end-%d", time.Now().UnixNano())
	done := make(chan struct{})
	c.mu.Lock()
	if c.exited {
		c.mu.Unlock()
		return fmt.Errorf("fakekubelet: attach %s: the container's process has exited", containerID)
	}
	c.out, c.marker, c.done = out, marker, done
	c.mu.Unlock()
	if in != nil {
		_, _ = io.Copy(c.stdin, in)
	}
	if _, err := fmt.Fprintf(c.stdin, "echo %s\n", marker); err != nil {
		return fmt.Errorf("fakekubelet: attach %s: %w", containerID, err)
	}
	<-done
	return nil
}

// container is a stand-in container's main process.
type container struct {
	stdin    io.WriteCloser
	attachMu sync.Mutex

	mu     sync.Mutex
	out    io.Writer     // the current attach's output
	marker string        // ends the current attach
	done   chan struct{} // closed when marker is read
	exited bool
}

// container returns the main process of id, starting it on first use.
// The process and its output reader are owned by rt (stop and wg).
func (rt *localRuntime) container(id string) (*container, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if c := rt.containers[id]; c != nil {
		return c, nil
	}
	cmd := exec.Command("sh")
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp"}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("fakekubelet: container %s: %w", id, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("fakekubelet: container %s: %w", id, err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("fakekubelet: container %s: %w", id, err)
	}
	c := &container{stdin: stdin}
	if rt.containers == nil {
		rt.containers = map[string]*container{}
	}
	rt.containers[id] = c
	rt.procs = append(rt.procs, cmd)
	rt.wg.Add(1)
	go func() { // reads the process's output until it exits
		defer rt.wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			switch {
			case c.done != nil && line == c.marker:
				close(c.done)
				c.out, c.done = nil, nil
			case c.out != nil:
				_, _ = io.WriteString(c.out, line+"\n")
			}
			c.mu.Unlock()
		}
		_ = cmd.Wait()
		c.mu.Lock()
		c.exited = true
		if c.done != nil {
			close(c.done)
			c.done = nil
		}
		c.mu.Unlock()
	}()
	return c, nil
}

// stop ends the containers' main processes; wg then sees their readers end.
func (rt *localRuntime) stop() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, cmd := range rt.procs {
		_ = cmd.Process.Kill()
	}
}

func (*localRuntime) PortForward(ctx context.Context, _ string, port int32, stream io.ReadWriteCloser) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("fakekubelet: port %d: %w", port, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(c, stream)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(stream, c)
	_ = stream.Close()
	_ = c.Close()
	wg.Wait()
	return nil
}

// tlsConfig mints a serving certificate for 127.0.0.1 from the kubelet CA
// and requires client certificates from it.
func tlsConfig(dir string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, "kubelet-ca.crt"))
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := os.ReadFile(filepath.Join(dir, "kubelet-ca.key"))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(caKeyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("kubelet CA: no PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("kubelet CA: %w", err)
	}
	caKey, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("kubelet CA key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "system:node:" + strings.ToLower(host)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}
