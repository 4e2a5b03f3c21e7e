package harness

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Target is a target entry for the server config.
type Target struct {
	Name, Kind, Address, HostKey, User string
	Record                             *bool
	Labels                             map[string]string
	Extra                              string // more YAML lines, indented by 4
}

// ServerOptions describe a jumpgate server to start.
type ServerOptions struct {
	IdP     *IdP
	Targets []Target
	Policy  string
	// DataDir defaults to a temp dir; give one to restart on the same data.
	DataDir string
	// ExtraConfig is appended to the config file.
	ExtraConfig string
	// BastionExtra are more keys of the bastion block, YAML flow style
	// (e.g. "max_startups: 10, login_grace_time: 2s").
	BastionExtra string
}

// Server is a running `jumpgate server`.
type Server struct {
	URL, SSHAddr, CAFile, ConfigFile, PolicyFile, DataDir string
	Proc                                                  *Process
	opts                                                  ServerOptions
	httpsAddr                                             string
}

// StartServer writes a config and policy and starts `jumpgate server`.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	s := prepareServer(t, o)
	s.start(t)
	return s
}

// StartServers starts one server per options all at once (replicas racing
// to migrate one database) and waits until every one is ready.
func StartServers(t testing.TB, opts ...ServerOptions) []*Server {
	t.Helper()
	out := make([]*Server, len(opts))
	for i, o := range opts {
		out[i] = prepareServer(t, o)
	}
	for _, s := range out {
		s.launch(t)
	}
	for _, s := range out {
		s.waitReady(t)
	}
	return out
}

func prepareServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	dir := t.TempDir()
	if o.DataDir == "" {
		o.DataDir = filepath.Join(dir, "data")
	}
	s := &Server{DataDir: o.DataDir, ConfigFile: filepath.Join(dir, "config.yaml"), PolicyFile: filepath.Join(dir, "policy.yaml"), opts: o}
	s.SSHAddr, s.httpsAddr = FreePort(t), FreePort(t)
	if err := os.WriteFile(s.PolicyFile, []byte(o.Policy), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nlisten: {ssh: %q, https: %q}\n", o.DataDir, s.SSHAddr, s.httpsAddr)
	if o.IdP != nil {
		fmt.Fprintf(&b, "oidc: {issuer: %q, client_id: %q, ca_file: %q}\n", o.IdP.Issuer, o.IdP.ClientID, o.IdP.CAFile)
	}
	bastion := "hostnames: [127.0.0.1, localhost]"
	if o.BastionExtra != "" {
		bastion += ", " + o.BastionExtra
	}
	fmt.Fprintf(&b, "bastion: {%s}\npolicy_file: %s\ntargets:\n", bastion, s.PolicyFile)
	for _, tg := range o.Targets {
		fmt.Fprintf(&b, "  - name: %s\n    kind: %s\n", tg.Name, tg.Kind)
		if tg.Address != "" {
			fmt.Fprintf(&b, "    address: %q\n", tg.Address)
		}
		if tg.HostKey != "" {
			fmt.Fprintf(&b, "    host_key: %q\n", tg.HostKey)
		}
		if tg.User != "" {
			fmt.Fprintf(&b, "    user: %s\n", tg.User)
		}
		if tg.Record != nil {
			fmt.Fprintf(&b, "    record: %v\n", *tg.Record)
		}
		if len(tg.Labels) > 0 {
			b.WriteString("    labels: {")
			first := true
			for k, v := range tg.Labels {
				if !first {
					b.WriteString(", ")
				}
				first = false
				fmt.Fprintf(&b, "%s: %s", k, v)
			}
			b.WriteString("}\n")
		}
		if tg.Extra != "" {
			b.WriteString(tg.Extra)
		}
	}
	b.WriteString(o.ExtraConfig)
	if err := os.WriteFile(s.ConfigFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	s.launch(t)
	s.waitReady(t)
}

func (s *Server) launch(t testing.TB) {
	t.Helper()
	s.Proc = Start(t, nil, Binary(t), "server", "--config", s.ConfigFile, "--log-level", "debug")
	proc := s.Proc
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("jumpgate server log:\n%s", tail(proc.Out.String(), 12000))
		}
	})
	s.URL = "https://" + s.httpsAddr
	s.CAFile = filepath.Join(s.DataDir, "tls", "cert.pem")
}

func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	WaitFor(t, 60*time.Second, "jumpgate server to be ready", func() bool {
		select {
		case <-s.Proc.Done():
			t.Fatalf("jumpgate server exited: %v\n%s", s.Proc.Err(), s.Proc.Out.String())
		default:
		}
		// The server writes cert.pem in place: wait until it is whole.
		if b, err := os.ReadFile(s.CAFile); err != nil || !x509.NewCertPool().AppendCertsFromPEM(b) {
			return false
		}
		c, err := net.DialTimeout("tcp", s.SSHAddr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		resp, err := TLSClient(t, s.CAFile).Get(s.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// Restart stops the server gracefully and starts it again on the same data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	_ = s.Proc.Stop(15 * time.Second)
	s.start(t)
}

// Crash kills the server with SIGKILL and starts it again on the same data.
func (s *Server) Crash(t testing.TB) {
	t.Helper()
	s.Proc.Kill()
	s.start(t)
}

// JG runs the jumpgate CLI against this server's data locally (--config).
func (s *Server) JG(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return Run(ctx, nil, Binary(t), append(args, "--config", s.ConfigFile)...)
}

// MustJG is JG that fails the test on error.
func (s *Server) MustJG(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.JG(t, args...)
	if err != nil {
		t.Fatalf("jumpgate %s: %v\n%s", Quote(args), err, out)
	}
	return out
}

// User is a person logged in with `jumpgate login`.
type User struct {
	Name, SSHDir, SSHConfig string
	srv                     *Server
}

// Login logs user in through the real OIDC flow and `jumpgate login
// --id-token-file`, and writes an ssh_config that reaches targets through
// the bastion.
func (s *Server) Login(t testing.TB, user string) *User {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(s.opts.IdP.Token(t, user)), 0o600); err != nil {
		t.Fatal(err)
	}
	u := &User{Name: user, SSHDir: filepath.Join(dir, "ssh"), SSHConfig: filepath.Join(dir, "ssh_config"), srv: s}
	out, err := u.JG(t, "login", "--server", s.URL, "--ca-file", s.CAFile, "--id-token-file", tokFile, "--no-agent")
	if err != nil {
		t.Fatalf("jumpgate login %s: %v\n%s", user, err, out)
	}
	host, port, _ := net.SplitHostPort(s.SSHAddr)
	cfg := fmt.Sprintf(`Host jumpgate
  HostName %[1]s
  Port %[2]s
  User %[4]s

Host *
  IdentityFile %[3]s/id_ed25519
  CertificateFile %[3]s/id_ed25519-cert.pub
  UserKnownHostsFile %[3]s/known_hosts
  GlobalKnownHostsFile /dev/null
  IdentitiesOnly yes
  IdentityAgent none
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 20
  LogLevel ERROR
`, host, port, u.SSHDir, user)
	if err := os.WriteFile(u.SSHConfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return u
}

// JG runs the CLI as this user (their identity and server).
func (u *User) JG(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return Run(ctx, nil, Binary(t), append(args, "--ssh-dir", u.SSHDir)...)
}

// SSHArgs returns ssh arguments to reach login@target through the bastion.
func (u *User) SSHArgs(login, target string, extra ...string) []string {
	args := []string{"-F", u.SSHConfig, "-J", "jumpgate"}
	args = append(args, extra...)
	return append(args, login+"@"+target)
}

// SSH runs ssh through the bastion and returns combined output.
func (u *User) SSH(ctx context.Context, login, target string, cmd ...string) (string, error) {
	args := append(u.SSHArgs(login, target), cmd...)
	return Run(ctx, nil, "ssh", args...)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Via returns the same identity pointed at another server's bastion (a
// replica sharing the same CA).
func (u *User) Via(s *Server) *User {
	host, port, _ := net.SplitHostPort(s.SSHAddr)
	b, _ := os.ReadFile(u.SSHConfig)
	cfg := strings.Replace(string(b), "Host jumpgate\n", "Host jumpgate\n", 1)
	lines := strings.Split(cfg, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "  HostName ") && i < 4 {
			lines[i] = "  HostName " + host
		}
		if strings.HasPrefix(l, "  Port ") && i < 4 {
			lines[i] = "  Port " + port
		}
	}
	v := *u
	v.SSHConfig = u.SSHConfig + "-" + port
	_ = os.WriteFile(v.SSHConfig, []byte(strings.Join(lines, "\n")), 0o600)
	v.srv = s
	return &v
}
