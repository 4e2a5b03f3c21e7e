package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jumpgate/jumpgate/bastion"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/devidp"
	"github.com/jumpgate/jumpgate/server"
)

// Options configure the dev environment.
type Options struct {
	// Dir holds all state (default ./.jumpgate-dev).
	Dir string
	// HTTPSAddr and SSHAddr are loopback listen addresses (port 0: any).
	HTTPSAddr, SSHAddr string
	// DemoLogin is the OS account the demo target's shell runs as
	// (default: the current user).
	DemoLogin  string
	LocalShell bastion.LocalShell
	Logger     *slog.Logger
	Out        io.Writer
	// OnReady is called with the running environment.
	OnReady func(Env)
}

// Env describes a running dev environment.
type Env struct {
	Dir, ConfigFile, PolicyFile, SSHConfig string
	ServerURL, SSHAddr, CAFile, Issuer     string
	DemoLogin                              string
	Ready                                  server.Ready
}

// ClientID is the OAuth client of the CLI and the console.
const ClientID = "jumpgate"

// Run starts the dev environment and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Dir == "" {
		o.Dir = ".jumpgate-dev"
	}
	if o.HTTPSAddr == "" {
		o.HTTPSAddr = "127.0.0.1:8443"
	}
	if o.SSHAddr == "" {
		o.SSHAddr = "127.0.0.1:2222"
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for _, a := range []string{o.HTTPSAddr, o.SSHAddr} {
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("devenv: %q: jumpgate dev listens on loopback addresses only", a)
		}
	}
	if o.DemoLogin == "" {
		u, err := user.Current()
		if err != nil {
			return fmt.Errorf("devenv: current user: %w", err)
		}
		o.DemoLogin = u.Username
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	httpsLn, err := net.Listen("tcp", o.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("devenv: listen %s: %w (is another jumpgate dev running?)", o.HTTPSAddr, err)
	}
	defer httpsLn.Close()
	sshLn, err := net.Listen("tcp", o.SSHAddr)
	if err != nil {
		return fmt.Errorf("devenv: listen %s: %w", o.SSHAddr, err)
	}
	defer sshLn.Close()
	serverURL := "https://" + httpsLn.Addr().String()
	issuer := serverURL + "/dev-idp"

	dataDir := filepath.Join(dir, "data")
	tlsCert, _ := server.SelfSignedPaths(dataDir)
	if err := server.EnsureSelfSigned(dataDir, nil); err != nil {
		return err
	}
	policyFile := filepath.Join(dir, "policy.yaml")
	if _, err := os.Stat(policyFile); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(policyFile, []byte(samplePolicy(o.DemoLogin)), 0o600); err != nil {
			return fmt.Errorf("devenv: %w", err)
		}
	}
	cfg := &config.Config{
		Dev:        true,
		DataDir:    dataDir,
		Listen:     config.Listen{SSH: sshLn.Addr().String(), HTTPS: httpsLn.Addr().String()},
		OIDC:       config.OIDC{Issuer: issuer, ClientID: ClientID, CAFile: tlsCert},
		Bastion:    config.Bastion{Hostnames: []string{"127.0.0.1", "localhost"}},
		Targets:    []config.Target{{Name: "demo", Kind: config.KindLocal, User: o.DemoLogin, Labels: map[string]string{"env": "dev"}}},
		PolicyFile: policyFile,
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	header := "# Written by `jumpgate dev` at every start: the configuration of this dev environment.\n"
	if err := os.WriteFile(cfgFile, append([]byte(header), b...), 0o600); err != nil {
		return err
	}
	idp, err := devidp.New(devidp.Config{
		Issuer: issuer, Users: devidp.DemoUsers(),
		Clients:        []devidp.Client{{ID: ClientID, RedirectURIs: []string{"http://127.0.0.1/callback", serverURL + "/auth/callback"}}},
		SigningKeyFile: filepath.Join(dataDir, "devidp-signing.pem"), Logger: o.Logger,
	})
	if err != nil {
		return err
	}
	sshConfig := filepath.Join(dir, "ssh_config")
	env := Env{Dir: dir, ConfigFile: cfgFile, PolicyFile: policyFile, SSHConfig: sshConfig, ServerURL: serverURL,
		SSHAddr: sshLn.Addr().String(), CAFile: tlsCert, Issuer: issuer, DemoLogin: o.DemoLogin}
	if err := os.WriteFile(sshConfig, []byte(sshConfigText(env)), 0o600); err != nil {
		return err
	}
	return server.Run(ctx, cfg, server.Options{
		Logger: o.Logger, HTTPSListener: httpsLn, SSHListener: sshLn, LocalShell: o.LocalShell,
		Mounts:  map[string]http.Handler{"/dev-idp/": idp.Handler()},
		Replica: "dev",
		OnReady: func(r server.Ready) {
			env.Ready = r
			printWelcome(o.Out, env)
			if o.OnReady != nil {
				o.OnReady(env)
			}
		},
	})
}

func home() string {
	h, err := os.UserHomeDir()
	if err != nil {
		return "~"
	}
	return h
}

func sshConfigText(e Env) string {
	host, port, _ := net.SplitHostPort(e.SSHAddr)
	id := filepath.Join(home(), ".ssh", "jumpgate")
	return fmt.Sprintf(`# ssh_config for the jumpgate dev environment (written by jumpgate dev).
# Use: ssh -F %[1]s %[6]s@demo
Host jumpgate
  HostName %[2]s
  Port %[3]s
  User jumpgate
  IdentityFile %[4]s/id_ed25519
  CertificateFile %[4]s/id_ed25519-cert.pub
  UserKnownHostsFile %[4]s/known_hosts
  IdentitiesOnly yes
  StrictHostKeyChecking yes

Host demo
  ProxyJump jumpgate
  IdentityFile %[4]s/id_ed25519
  CertificateFile %[4]s/id_ed25519-cert.pub
  UserKnownHostsFile %[4]s/known_hosts
  IdentitiesOnly yes
  StrictHostKeyChecking yes
%[5]s`, e.SSHConfig, host, port, id, "", e.DemoLogin)
}

func printWelcome(w io.Writer, e Env) {
	var users []string
	for _, u := range devidp.DemoUsers() {
		users = append(users, fmt.Sprintf("    %-6s password %-16s groups %s", u.Username, u.Password, strings.Join(u.Groups, ",")))
	}
	_, port, _ := net.SplitHostPort(e.SSHAddr)
	fmt.Fprintf(w, `
jumpgate dev is running — DEVELOPMENT ONLY (embedded dev IdP, demo users, loopback).

  state      %[1]s
  HTTPS      %[2]s   (self-signed: --ca-file %[3]s)
  SSH        %[4]s
  dev IdP    %[5]s

Demo users (dev-only passwords):
%[6]s

Try it (no browser needed):
  1. jumpgate login --server %[2]s --ca-file %[3]s --device
     then complete the login it prints, from a browser or from this terminal:
       jumpgate dev approve-device --server %[2]s --ca-file %[3]s --user alice CODE
  2. jumpgate status
  3. ssh -F %[7]s %[8]s@demo
     (a recorded shell through the bastion on port %[9]s; that ssh_config
     uses the key, certificate and known_hosts jumpgate login wrote in
     ~/.ssh/jumpgate/ — or paste the snippet login printed into ~/.ssh/config)
  4. jumpgate sessions list --config %[10]s
     jumpgate replay ID --config %[10]s
  5. jumpgate audit list --config %[10]s;  jumpgate audit verify --config %[10]s

Recordings are written under %[11]s. Stop with Ctrl-C.
`, e.Dir, e.ServerURL, e.CAFile, e.SSHAddr, e.Issuer, strings.Join(users, "\n"), e.SSHConfig, e.DemoLogin, port, e.ConfigFile,
		filepath.Join(e.Dir, "data", "recordings"))
}

func samplePolicy(login string) string {
	return fmt.Sprintf(`# Sample policy of the jumpgate dev environment. Edit it: it is reloaded on change.
roles:
  - name: dev
    groups: [engineering]
    logins: [%[1]s]
    targets: {labels: {env: dev}}
  - name: dba
    groups: [dba]
    targets: {names: [orders-db]}
    sql:
      block: [drop, truncate, alter_role, delete_without_where, update_without_where]
      review: [ddl]
    mask:
      columns: ["*.ssn", "customers.email", "*.card_number"]
      patterns: [credit_card, email, us_ssn]
  - name: security
    groups: [security]
    logins: [%[1]s]
    targets: {names: [demo]}
  - name: sre
    groups: [sre-leads]
    logins: [%[1]s]
    targets: {names: ["*"]}
commands:
  block: ['^\s*rm\s+-rf\s+/(\s|$)', '^\s*(shutdown|reboot|halt|poweroff)\b', 'mkfs']
  review: ['^\s*sudo\b']
kubernetes:
  block: [{verbs: [delete], resources: [namespaces]}]
  review: [{verbs: [create], resources: [pods/exec]}]
  mask: [{resources: [secrets], fields: [data, stringData]}]
requests:
  approvers: [{groups: [sre-leads]}]
  max_duration: 4h
auditors: [{groups: [security]}]
admins: [{groups: [sre-leads]}]
`, login)
}
