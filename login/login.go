package login

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Options configure Login. Only Server is required.
type Options struct {
	// Server is the jumpgate server URL (https://; http:// only on loopback).
	Server string
	// SSHDir is where the identity is written; default DefaultSSHDir().
	SSHDir string
	// CAFile is an extra PEM root for TLS to the server and the identity
	// provider, remembered for later commands.
	CAFile string
	// HTTPClient overrides the client built from CAFile.
	HTTPClient *http.Client

	// Device selects the device authorization flow; IDTokenFile reads the
	// token from a file instead. Neither: browser flow (code + PKCE).
	Device      bool
	IDTokenFile string
	// Scopes override the server's advertised scopes (oidc.scopes).
	Scopes []string
	// TTL is the certificate lifetime to ask for; 0 lets the server choose.
	TTL time.Duration

	// OpenBrowser and BrowserTimeout: see BrowserOptions.
	OpenBrowser    func(ctx context.Context, url string) error
	BrowserTimeout time.Duration

	// AgentSocket is the ssh-agent socket; empty means $SSH_AUTH_SOCK.
	// NoAgent skips the agent even when the variable is set.
	AgentSocket string
	NoAgent     bool

	// Targets are named in the printed ssh_config snippet (optional).
	Targets []string

	// Out receives what the user should read (URLs, codes, the snippet);
	// default io.Discard. Logger gets diagnostics; default discards.
	Out    io.Writer
	Logger *slog.Logger
	// Now and Rand default to time.Now and crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader
}

// Result describes a successful login.
type Result struct {
	SSHDir      string
	Certificate *ssh.Certificate
	Response    CertResponse
	Saved       ServerConfigSaved
	// Snippet is the ssh_config text also printed to Out.
	Snippet string
	// AgentAdded tells whether the key is in the ssh-agent; AgentErr is
	// why not, when an agent was expected (a warning, not a failure).
	AgentAdded bool
	AgentErr   error
}

// Login runs `jumpgate login`: discover the server, get an ID token, get a
// certificate for a fresh ed25519 key, check it, write the identity under
// SSHDir atomically, add it to the ssh-agent and print an ssh_config
// snippet. Nothing is written unless the certificate checks out.
func Login(ctx context.Context, o Options) (*Result, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	rnd := o.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	if o.Device && o.IDTokenFile != "" {
		return nil, errors.New("login: choose either the device flow or an ID token file")
	}
	if _, err := parseServerURL(o.Server); err != nil {
		return nil, err
	}
	server := strings.TrimRight(o.Server, "/")
	sshDir := o.SSHDir
	if sshDir == "" {
		d, err := DefaultSSHDir()
		if err != nil {
			return nil, err
		}
		sshDir = d
	}
	sshDir, err := filepath.Abs(sshDir)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	caFile := o.CAFile
	if caFile != "" {
		if caFile, err = filepath.Abs(caFile); err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
	}
	hc := o.HTTPClient
	if hc == nil {
		if hc, err = HTTPClient(caFile); err != nil {
			return nil, err
		}
	}

	cfg, err := Discover(ctx, hc, server)
	if err != nil {
		return nil, err
	}
	log.Debug("server config", "issuer", cfg.Issuer, "client_id", cfg.ClientID, "ssh_address", cfg.SSHAddress)
	settings := settingsFrom(cfg, o.Scopes)

	var idToken string
	switch {
	case o.IDTokenFile != "":
		idToken, err = TokenFromFile(o.IDTokenFile)
	case o.Device:
		if !cfg.DeviceFlow {
			return nil, ErrNoDeviceFlow
		}
		idToken, err = DeviceToken(ctx, hc, settings, DeviceOptions{Out: out, Now: o.Now})
	default:
		idToken, err = BrowserToken(ctx, hc, settings, BrowserOptions{
			Out: out, OpenBrowser: o.OpenBrowser, Timeout: o.BrowserTimeout, Rand: rnd, Now: o.Now,
		})
	}
	if err != nil {
		return nil, err
	}

	pub, priv, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return nil, fmt.Errorf("login: generate key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	cr, err := requestCertificate(ctx, hc, server, idToken, sshPub, o.TTL)
	if err != nil {
		return nil, err
	}
	cert, hostCA, err := checkIssued(cr, sshPub, now())
	if err != nil {
		return nil, err
	}
	host, port, err := bastionAddress(cfg, server)
	if err != nil {
		return nil, err
	}

	saved := ServerConfigSaved{
		Server:     server,
		CAFile:     caFile,
		Issuer:     cfg.Issuer,
		ClientID:   cfg.ClientID,
		SSHAddress: net.JoinHostPort(host, port),
		KnownHosts: filepath.Join(sshDir, KnownHostsFile),
	}
	files, err := buildFiles(priv, cert, hostCA, saved)
	if err != nil {
		return nil, err
	}
	if err := writeIdentity(sshDir, files); err != nil {
		return nil, err
	}
	log.Info("identity written", "dir", sshDir, "key_id", cert.KeyId, "serial", cert.Serial)

	res := &Result{SSHDir: sshDir, Certificate: cert, Response: cr, Saved: saved}
	socket := o.AgentSocket
	if socket == "" {
		socket = os.Getenv("SSH_AUTH_SOCK")
	}
	if !o.NoAgent && socket != "" {
		if err := AddToAgent(ctx, socket, priv, cert, now()); err != nil {
			res.AgentErr = err
			fmt.Fprintf(out, "warning: could not add the key to the ssh-agent: %v\n", err)
		} else {
			res.AgentAdded = true
		}
	}

	user := keyIDUser(cert.KeyId)
	res.Snippet = SSHConfigSnippet(SnippetOptions{
		SSHDir: sshDir, BastionHost: host, BastionPort: port, User: user, Targets: o.Targets,
	})
	validBefore := time.Unix(int64(cert.ValidBefore), 0)
	fmt.Fprintf(out, "Logged in as %s (key id %s, serial %d).\nPrincipals: %s\nValid until %s (%s).\n",
		user, cert.KeyId, cert.Serial, strings.Join(cert.ValidPrincipals, ", "),
		validBefore.UTC().Format(time.RFC3339), validBefore.Sub(now()).Truncate(time.Second))
	if cr.TTLClamped {
		fmt.Fprintln(out, "The requested lifetime was above the server's maximum and was shortened.")
	}
	if res.AgentAdded {
		fmt.Fprintln(out, "Key and certificate added to the ssh-agent until the certificate expires.")
	}
	fmt.Fprintf(out, "Identity in %s.\n\n%s", sshDir, res.Snippet)
	return res, nil
}

// formatTTL spells a duration the short way ("10m", "1h30m", "45s").
func formatTTL(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
