package login

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// File names under the SSH directory.
const (
	KeyFile        = "id_ed25519"
	PubKeyFile     = "id_ed25519.pub"
	CertFile       = "id_ed25519-cert.pub"
	KnownHostsFile = "known_hosts"
	ConfigFile     = "config.json"
)

// Errors about a server's certificate answer.
var (
	ErrCertNotOurs     = errors.New("login: the server returned a certificate for another key; refusing it")
	ErrNotUserCert     = errors.New("login: the server returned something that is not an SSH user certificate")
	ErrNotLoggedIn     = errors.New("login: not logged in (no certificate); run `jumpgate login`")
	ErrIdentityMissing = errors.New("login: the saved identity is incomplete; run `jumpgate login`")
)

// DefaultSSHDir returns ~/.ssh/jumpgate.
func DefaultSSHDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("login: home directory: %w", err)
	}
	return filepath.Join(home, ".ssh", "jumpgate"), nil
}

// CertResponse is the answer of POST /v1/ssh/certificates.
type CertResponse struct {
	Certificate string    `json:"certificate"`
	HostCA      string    `json:"host_ca"`
	Serial      uint64    `json:"serial"`
	ExpiresAt   time.Time `json:"expires_at"`
	TTLClamped  bool      `json:"ttl_clamped"`
	Principals  []string  `json:"principals"`
}

// requestCertificate trades the ID token for a certificate on pub.
func requestCertificate(ctx context.Context, hc *http.Client, serverURL, idToken string, pub ssh.PublicKey, ttl time.Duration) (CertResponse, error) {
	var cr CertResponse
	body := map[string]string{"public_key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))}
	if ttl > 0 {
		body["ttl"] = formatTTL(ttl)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return cr, fmt.Errorf("login: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(serverURL, "/")+"/v1/ssh/certificates", bytes.NewReader(b))
	if err != nil {
		return cr, fmt.Errorf("login: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+idToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return cr, fmt.Errorf("login: request a certificate: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return cr, readAPIError(resp)
	}
	if err := decodeInto(resp.Body, &cr); err != nil {
		return cr, err
	}
	return cr, nil
}

// checkIssued parses and checks the server's answer: a user certificate for
// exactly our key, valid now, and a parseable host CA key.
func checkIssued(cr CertResponse, pub ssh.PublicKey, now time.Time) (*ssh.Certificate, ssh.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cr.Certificate))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotUserCert, err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.UserCert {
		return nil, nil, ErrNotUserCert
	}
	if !bytes.Equal(cert.Key.Marshal(), pub.Marshal()) {
		return nil, nil, ErrCertNotOurs
	}
	if cr.Serial != 0 && cr.Serial != cert.Serial {
		return nil, nil, fmt.Errorf("login: the server said serial %d but the certificate has %d", cr.Serial, cert.Serial)
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && !now.Before(time.Unix(int64(cert.ValidBefore), 0)) {
		return nil, nil, errors.New("login: the server returned an already expired certificate")
	}
	if len(cert.ValidPrincipals) == 0 {
		return nil, nil, errors.New("login: the server returned a certificate without principals")
	}
	hostCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cr.HostCA))
	if err != nil {
		return nil, nil, fmt.Errorf("login: the server's host CA key: %w", err)
	}
	if _, ok := hostCA.(*ssh.Certificate); ok {
		return nil, nil, errors.New("login: the server's host CA is a certificate, not a key")
	}
	return cert, hostCA, nil
}

// ServerConfigSaved is config.json: what later commands need to reach the
// server of the last login.
type ServerConfigSaved struct {
	Server string `json:"server"`
	// CAFile is the extra TLS root (PEM) used at login, if any, as an
	// absolute path.
	CAFile     string `json:"ca_file,omitempty"`
	Issuer     string `json:"issuer,omitempty"`
	ClientID   string `json:"client_id,omitempty"`
	SSHAddress string `json:"ssh_address,omitempty"`
	// KnownHosts is the known_hosts file holding the host CA line.
	KnownHosts string `json:"known_hosts,omitempty"`
}

// identityFiles are the files one login writes, by name.
type identityFiles struct {
	key, pub, cert, knownHosts, config []byte
}

func buildFiles(priv ed25519.PrivateKey, cert *ssh.Certificate, hostCA ssh.PublicKey, saved ServerConfigSaved) (identityFiles, error) {
	var f identityFiles
	comment := cert.KeyId
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return f, fmt.Errorf("login: encode private key: %w", err)
	}
	f.key = pem.EncodeToMemory(block)
	f.pub = appendComment(ssh.MarshalAuthorizedKey(cert.Key), comment)
	f.cert = appendComment(ssh.MarshalAuthorizedKey(cert), comment)
	f.knownHosts = []byte("@cert-authority * " + string(ssh.MarshalAuthorizedKey(hostCA)))
	cfg, err := json.MarshalIndent(saved, "", "  ")
	if err != nil {
		return f, fmt.Errorf("login: encode %s: %w", ConfigFile, err)
	}
	f.config = append(cfg, '\n')
	return f, nil
}

func appendComment(line []byte, comment string) []byte {
	line = bytes.TrimRight(line, "\n")
	if comment = strings.Join(strings.Fields(comment), "_"); comment != "" {
		line = append(line, ' ')
		line = append(line, comment...)
	}
	return append(line, '\n')
}

// writeIdentity writes every file to a temporary name in dir first (with its
// final mode, fsynced) and renames them into place only when all writes
// succeeded, so a failed login (disk full, permissions) leaves the previous
// identity, or none, untouched. Each rename is atomic; the renames are in one
// directory and do not fail in practice, and on a failure the remaining
// temporary files are removed.
func writeIdentity(dir string, f identityFiles) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("login: create %s: %w", dir, err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{PubKeyFile, f.pub, 0o644},
		{KnownHostsFile, f.knownHosts, 0o644},
		{ConfigFile, f.config, 0o600},
		{KeyFile, f.key, 0o600},
		{CertFile, f.cert, 0o644},
	}
	temps := make([]string, 0, len(files))
	cleanup := func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}
	for _, file := range files {
		tmp, err := writeTemp(dir, file.name, file.data, file.mode)
		if err != nil {
			cleanup()
			return err
		}
		temps = append(temps, tmp)
	}
	for i, file := range files {
		if err := os.Rename(temps[i], filepath.Join(dir, file.name)); err != nil {
			cleanup()
			return fmt.Errorf("login: install %s: %w", file.name, err)
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the renames durable; best effort
		d.Close()
	}
	return nil
}

func writeTemp(dir, name string, data []byte, mode os.FileMode) (string, error) {
	t, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("login: write %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			t.Close()
			os.Remove(t.Name())
		}
	}()
	if err := t.Chmod(mode); err != nil {
		return "", fmt.Errorf("login: write %s: %w", name, err)
	}
	if _, err := t.Write(data); err != nil {
		return "", fmt.Errorf("login: write %s: %w", name, err)
	}
	if err := t.Sync(); err != nil {
		return "", fmt.Errorf("login: write %s: %w", name, err)
	}
	if err := t.Close(); err != nil {
		return "", fmt.Errorf("login: write %s: %w", name, err)
	}
	ok = true
	return t.Name(), nil
}

// LoadIdentity reads the identity of the last login under sshDir: a
// certificate signer for API calls (see APIClient), the certificate, and the
// saved server settings. It does not check expiry; APIClient.Do and Status
// do.
func LoadIdentity(sshDir string) (ssh.Signer, *ssh.Certificate, ServerConfigSaved, error) {
	var saved ServerConfigSaved
	cert, err := readCert(filepath.Join(sshDir, CertFile))
	if err != nil {
		return nil, nil, saved, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(sshDir, KeyFile))
	if err != nil {
		return nil, nil, saved, fmt.Errorf("%w: %w", ErrIdentityMissing, err)
	}
	key, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, nil, saved, fmt.Errorf("login: %s: %w", KeyFile, err)
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return nil, nil, saved, fmt.Errorf("login: %s does not belong to %s: %w", CertFile, KeyFile, err)
	}
	saved, err = readSaved(sshDir)
	if err != nil {
		return nil, nil, saved, err
	}
	return signer, cert, saved, nil
}

func readCert(path string) (*ssh.Certificate, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotLoggedIn
	}
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("login: %s: %w", path, err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.UserCert {
		return nil, fmt.Errorf("login: %s is not an SSH user certificate", path)
	}
	return cert, nil
}

func readSaved(sshDir string) (ServerConfigSaved, error) {
	var saved ServerConfigSaved
	b, err := os.ReadFile(filepath.Join(sshDir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return saved, nil
	}
	if err != nil {
		return saved, fmt.Errorf("login: %w", err)
	}
	if err := json.NewDecoder(io.LimitReader(bytes.NewReader(b), 1<<20)).Decode(&saved); err != nil {
		return saved, fmt.Errorf("login: %s: %w", ConfigFile, err)
	}
	return saved, nil
}
