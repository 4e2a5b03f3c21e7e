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
// asked for) instead of inside a container; Attach is refused; PortForward
// dials the port on 127.0.0.1.
//
// It serves TLS with a certificate signed by the kubelet CA the API server
// wrote into -dir (kubelet-ca.crt, kubelet-ca.key) and requires the API
// server's client certificate signed by that CA, like a kubelet with
// client-certificate authentication. Once listening it writes
// {"port":N} to the file named by -ready, and runs until SIGTERM or SIGINT.
package main

import (
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

// serveCRI serves the one-time streaming URL in process.
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
	if err != nil {
		k.serveCRI(w, r, "", err)
		return
	}
	k.serveCRI(w, r, resp.Url, nil)
}

func (k *kubelet) attach(w http.ResponseWriter, r *http.Request) {
	resp, err := k.cri.GetAttach(&runtimeapi.AttachRequest{
		ContainerId: containerID(r),
		Tty:         flagSet(r, "tty"),
		Stdin:       flagSet(r, "input"),
		Stdout:      flagSet(r, "output"),
		Stderr:      flagSet(r, "error"),
	})
	if err != nil {
		k.serveCRI(w, r, "", err)
		return
	}
	k.serveCRI(w, r, resp.Url, nil)
}

func (k *kubelet) portForward(w http.ResponseWriter, r *http.Request) {
	resp, err := k.cri.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: r.PathValue("namespace") + "/" + r.PathValue("pod")})
	if err != nil {
		k.serveCRI(w, r, "", err)
		return
	}
	k.serveCRI(w, r, resp.Url, nil)
}

// localRuntime is the stand-in container runtime: commands run as local
// processes of this program.
type localRuntime struct {
	// wg owns the PTY stdin copiers, which can outlive their Exec (they
	// end when the streaming server closes the client's stdin stream);
	// run waits for them on shutdown.
	wg sync.WaitGroup
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

func (*localRuntime) Attach(context.Context, string, io.Reader, io.WriteCloser, io.WriteCloser, bool, <-chan remotecommand.TerminalSize) error {
	return errors.New("fakekubelet: attach is not supported (there is no container to attach to)")
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
