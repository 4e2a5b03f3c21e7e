package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/kubetest"
)

func init() {
	register(Benchmark{ID: "8", Rows: []string{"8b", "8c"}, Title: "Kubernetes API through the forwarder", Run: runKube})
}

const kubeTarget = "prod-k8s"

// kubePolicy is the policy of a realistic cluster target: rules that do
// not touch pods (a block and a mask elsewhere), so GET pods is audited
// and streamed.
const kubePolicy = `
roles:
  - name: eng
    groups: [engineering]
    targets: {names: [prod-k8s]}
kubernetes:
  block: [{verbs: [delete], resources: [namespaces]}]
  mask: [{resources: [secrets], fields: [data, stringData]}]
`

// kubePods are created in namespace default so the listed pods are a
// realistic small response (the test cluster has no scheduler: they stay
// Pending).
const kubePods = 5

// kubeGetPath is the request of the raw GET loop.
const kubeGetPath = "/api/v1/namespaces/default/pods"

// runKube measures the user's path to a cluster through jumpgate
// (`ssh -L PORT:prod-k8s:443 bastion -N` and the kubeconfig of `jumpgate
// kube-config`) against an OpenSSH `-L` tunnel through the reference jump
// sshd straight to the same kube-apiserver.
func runKube(ctx context.Context, e *Env) ([]Row, error) {
	fl := e.Flags
	r8 := Row{ID: "8", Title: "Kubernetes `GET " + kubeGetPath + "` latency p50 through `ssh -L` to the forwarder", Unit: "ms",
		RefName: "(OpenSSH -L to kube-apiserver)", Goal: Goal{DiffAtMost, 2}}
	r8b := Row{ID: "8b", Title: "`kubectl get pods` wall time", Unit: "ms", RefName: "(OpenSSH -L to kube-apiserver)"}
	r8c := Row{ID: "8c", Title: "Kubernetes `GET " + kubeGetPath + "` latency p99", Unit: "ms", RefName: "(OpenSSH -L to kube-apiserver)"}
	rows := func() []Row { return []Row{r8, r8b, r8c} }
	if _, err := os.Stat(kubetest.KubectlPath()); err != nil {
		return rows(), fmt.Errorf("bench: kubectl not installed: %w", err)
	}
	e.Log.Info("starting kube-apiserver (built once into the user cache)")
	c := kubetest.Start(e.TB)
	c.Kubectl(e.TB, "", "create", "clusterrolebinding", "bench-admin", "--clusterrole=cluster-admin", "--user="+e.User.Name+"@example.com")
	// No controller-manager runs: the service account pods need is made by hand.
	if out, err := c.KubectlErr("", "-n", "default", "create", "serviceaccount", "default"); err != nil && !strings.Contains(out, "AlreadyExists") {
		e.Log.Warn("cannot create the default service account", "err", err, "out", out)
	}
	for i := 0; i < kubePods; i++ {
		if out, err := c.KubectlErr("", "-n", "default", "run", fmt.Sprintf("web-%d", i), "--image=registry.example/web:1", "--labels=app=web"); err != nil {
			e.Log.Warn("cannot create a pod; the list is shorter", "err", err, "out", out)
		}
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return rows(), fmt.Errorf("bench: kube-apiserver URL: %w", err)
	}
	dir := e.TB.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(c.Token), 0o600); err != nil {
		return rows(), err
	}
	e.Log.Info("starting a jumpgate server for the cluster target")
	fs := e.startFwdServer(kubePolicy, []harness.Target{{Name: kubeTarget, Kind: "kubernetes", Address: u.Host,
		Extra: "    ca_file: " + c.CAFile + "\n    credentials: {token_file: " + tokFile + "}\n"}})
	defer fs.Srv.Proc.Stop(15 * time.Second)

	jg, err := e.openTunnel(ctx, fs.SSHConfig, jgJump, kubeTarget+":443")
	if err != nil {
		return rows(), err
	}
	defer jg.Close()
	ref, err := e.openTunnel(ctx, e.SSHConfig, refJump, u.Host)
	if err != nil {
		return rows(), err
	}
	defer ref.Close()
	kc := filepath.Join(dir, "kubeconfig")
	if out, err := fs.User.JG(e.TB, "kube-config", kubeTarget, "--port", jg.Port(), "-o", kc); err != nil {
		return rows(), fmt.Errorf("bench: jumpgate kube-config: %w: %s", err, out)
	}
	jgCA, jgToken, err := kubeconfigCluster(kc, "jumpgate-"+kubeTarget)
	if err != nil {
		return rows(), err
	}

	// 8, 8c: a raw GET loop on one kept-alive HTTP/2 connection per side,
	// as kubectl and client-go hold one.
	jgc, err := kubeClient(jgCA)
	if err != nil {
		return rows(), err
	}
	defer jgc.CloseIdleConnections()
	refc, err := kubeClient(c.CAPEM)
	if err != nil {
		return rows(), err
	}
	defer refc.CloseIdleConnections()
	jgURL, refURL := "https://"+jg.Addr+kubeGetPath, "https://"+ref.Addr+kubeGetPath
	var jgS, refS []float64
	var jgBytes, refBytes int
	var jgCPU, refCPU float64 // CPU seconds of the relaying side during the loops
	for _, w := range []struct {
		c        *http.Client
		url, tok string
	}{{refc, refURL, c.Token}, {jgc, jgURL, jgToken}} { // warm-up: connections, caches
		for i := 0; i < 20; i++ {
			if _, _, err := kubeGet(ctx, w.c, w.url, w.tok); err != nil {
				return rows(), err
			}
		}
	}
	for round := 0; round < fl.KubeRounds; round++ {
		for _, step := range []struct {
			c        *http.Client
			url, tok string
			out      *[]float64
			n        *int
			pid      int
			cpu      *float64
		}{{refc, refURL, c.Token, &refS, &refBytes, e.RefJump.PID, &refCPU}, {jgc, jgURL, jgToken, &jgS, &jgBytes, fs.PID(), &jgCPU}} {
			cpu0 := treeCPU(step.pid)
			var stopProf func()
			if fl.ProfileDir != "" && round == fl.KubeRounds-1 && step.c == jgc {
				stopProf = e.perfPID("kube-get", fs.PID())
			}
			for i := 0; i < fl.KubeGets; i++ {
				d, n, err := kubeGet(ctx, step.c, step.url, step.tok)
				if err != nil {
					return rows(), err
				}
				*step.out = append(*step.out, ms(d))
				*step.n = n
			}
			*step.cpu += treeCPU(step.pid) - cpu0
			if stopProf != nil {
				stopProf()
			}
		}
		e.Log.Info("kube GET", "round", round+1, "jumpgate_p50_ms", num(quantile(jgS, .5)), "ref_p50_ms", num(quantile(refS, .5)))
	}
	if jgBytes != refBytes {
		e.Log.Warn("the two sides listed different bodies", "jumpgate_bytes", jgBytes, "ref_bytes", refBytes)
	}
	p := func(xs []float64, q float64) []float64 { return []float64{quantile(xs, q)} }
	r8.JG, r8.Ref = p(jgS, .5), p(refS, .5)
	r8c.JG, r8c.Ref = p(jgS, .99), p(refS, .99)
	getMethod := fmt.Sprintf("Go HTTP/2 client, one kept-alive connection per side, %d rounds × %d GETs per side taking turns (after 20 warm-up GETs), "+
		"%d pods listed (%d B of JSON); jumpgate: `ssh -L PORT:%s:443 bastion -N`, the CA of `jumpgate kube-config`'s kubeconfig, its placeholder token, "+
		"`jumpgate server` process impersonating the user and auditing kube.request to bbolt; reference: `ssh -L` through the OpenSSH jump sshd to the "+
		"kube-apiserver (%s, etcd in process) with the admin token",
		fl.KubeRounds, fl.KubeGets, kubePods, jgBytes, kubeTarget, kubetest.Version)
	r8.Method = fmt.Sprintf("overhead %+.2f ms at p50; relay CPU per request: jumpgate server %s µs, OpenSSH jump sshd %s µs; %s",
		median(r8.JG)-median(r8.Ref), num(jgCPU/float64(len(jgS))*1e6), num(refCPU/float64(len(refS))*1e6), getMethod)
	r8c.Method = fmt.Sprintf("overhead %+.2f ms at p99; same samples as row 8; informational", median(r8c.JG)-median(r8c.Ref))

	// 8b: kubectl get pods, wall time, discovery cache warm on both sides.
	jgHome, refHome := filepath.Join(dir, "home-jg"), filepath.Join(dir, "home-ref")
	jgArgs := []string{"--kubeconfig", kc, "--context", "jumpgate-" + kubeTarget, "get", "pods", "-n", "default"}
	refArgs := []string{"--kubeconfig", os.DevNull, "--server", "https://" + ref.Addr, "--certificate-authority", c.CAFile, "--token", c.Token,
		"get", "pods", "-n", "default"}
	for i := 0; i < 2; i++ { // warm-up: discovery caches
		if _, err := kubectlTimed(ctx, refHome, refArgs); err != nil {
			return rows(), err
		}
		if _, err := kubectlTimed(ctx, jgHome, jgArgs); err != nil {
			return rows(), err
		}
	}
	for i := 0; i < fl.Kubectls; i++ {
		d, err := kubectlTimed(ctx, refHome, refArgs)
		if err != nil {
			return rows(), err
		}
		r8b.Ref = append(r8b.Ref, ms(d))
		if d, err = kubectlTimed(ctx, jgHome, jgArgs); err != nil {
			return rows(), err
		}
		r8b.JG = append(r8b.JG, ms(d))
	}
	r8b.Method = fmt.Sprintf("`kubectl get pods -n default` (%s, a new process and connection each run, discovery cache warm), %d runs per side taking turns; "+
		"jumpgate: the kubeconfig of `jumpgate kube-config`; reference: `--server` on the OpenSSH tunnel, the cluster CA and admin token; informational",
		kubectlVersion(), fl.Kubectls)
	return rows(), nil
}

// kubeconfigCluster returns the CA and the user token of context name in
// the kubeconfig file.
func kubeconfigCluster(file, name string) (ca []byte, token string, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("bench: %w", err)
	}
	var kc struct {
		Clusters []struct {
			Name    string
			Cluster map[string]string
		}
		Users []struct {
			Name string
			User map[string]string
		}
		Contexts []struct {
			Name    string
			Context map[string]string
		}
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, "", fmt.Errorf("bench: kubeconfig: %w", err)
	}
	var cluster, user string
	for _, c := range kc.Contexts {
		if c.Name == name {
			cluster, user = c.Context["cluster"], c.Context["user"]
		}
	}
	for _, c := range kc.Clusters {
		if c.Name == cluster {
			if ca, err = base64.StdEncoding.DecodeString(c.Cluster["certificate-authority-data"]); err != nil {
				return nil, "", fmt.Errorf("bench: kubeconfig CA: %w", err)
			}
		}
	}
	for _, u := range kc.Users {
		if u.Name == user {
			token = u.User["token"]
		}
	}
	if len(ca) == 0 {
		return nil, "", fmt.Errorf("bench: kubeconfig %s has no CA for context %s", file, name)
	}
	return ca, token, nil
}

// kubeClient is an HTTP/2 client trusting caPEM.
func kubeClient(caPEM []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("bench: no certificate in the CA PEM")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// kubeGet times one GET of url and returns the body length.
func kubeGet(ctx context.Context, c *http.Client, url, token string) (time.Duration, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: GET %s: %w", url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("bench: GET %s: %s: %.300s", url, resp.Status, b)
	}
	return d, len(b), nil
}

// kubectlTimed runs kubectl with HOME=home (its discovery cache) and
// returns the wall time.
func kubectlTimed(ctx context.Context, home string, args []string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubetest.KubectlPath(), args...)
	cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("bench: kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return d, nil
}

func kubectlVersion() string {
	out, err := exec.Command(kubetest.KubectlPath(), "version", "--client", "-o", "yaml").Output()
	if err != nil {
		return "kubectl"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && k == "gitVersion" {
			return "kubectl " + strings.TrimSpace(v)
		}
	}
	return "kubectl"
}
