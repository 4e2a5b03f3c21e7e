package login

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// DefaultScopes are requested when neither the server nor the caller names
// scopes.
var DefaultScopes = []string{"openid", "email", "profile", "groups"}

// ServerConfig is the answer of GET /v1/config.
type ServerConfig struct {
	Issuer     string   `json:"issuer"`
	ClientID   string   `json:"client_id"`
	Scopes     []string `json:"scopes"`
	DeviceFlow bool     `json:"device_flow"`
	// SSHAddress is the bastion's host:port for ssh clients. When it is
	// empty or its host is empty, the server URL's host and port 22 (or
	// the given port) are used.
	SSHAddress string `json:"ssh_address"`
}

// Discover fetches the server's public login settings.
func Discover(ctx context.Context, hc *http.Client, serverURL string) (ServerConfig, error) {
	var cfg ServerConfig
	if _, err := parseServerURL(serverURL); err != nil {
		return cfg, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(serverURL, "/")+"/v1/config", nil)
	if err != nil {
		return cfg, fmt.Errorf("login: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return cfg, fmt.Errorf("login: reach server: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cfg, readAPIError(resp)
	}
	if err := decodeInto(resp.Body, &cfg); err != nil {
		return cfg, err
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}
	return cfg, nil
}

// parseServerURL accepts https URLs, and http only on loopback (tests, dev).
func parseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("login: server URL: %w", err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("login: server URL %q has no host", s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("login: server URL %q: http is allowed only on loopback", s)
		}
	default:
		return nil, fmt.Errorf("login: server URL %q: want https://", s)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bastionAddress returns the host and port clients should ssh to.
func bastionAddress(cfg ServerConfig, serverURL string) (host, port string, err error) {
	u, err := parseServerURL(serverURL)
	if err != nil {
		return "", "", err
	}
	host, port = u.Hostname(), "22"
	if cfg.SSHAddress != "" {
		h, p, err := net.SplitHostPort(cfg.SSHAddress)
		if err != nil {
			return "", "", fmt.Errorf("login: server's ssh_address %q: %w", cfg.SSHAddress, err)
		}
		if h != "" && h != "0.0.0.0" && h != "::" {
			host = h
		}
		if p != "" {
			port = p
		}
	}
	if host == "" {
		return "", "", errors.New("login: cannot tell the bastion's address")
	}
	return host, port, nil
}
