package login

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestAgentLifetime(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	tests := []struct {
		name        string
		validBefore uint64
		want        uint32
	}{
		{"ten minutes", uint64(now.Add(10 * time.Minute).Unix()), 600},
		{"rounds down", uint64(now.Add(90 * time.Second).Unix()), 90},
		{"already expired", uint64(now.Add(-time.Second).Unix()), 1},
		{"forever", ssh.CertTimeInfinity, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := agentLifetime(&ssh.Certificate{ValidBefore: tt.validBefore}, now); got != tt.want {
				t.Fatalf("agentLifetime = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBastionAddress(t *testing.T) {
	tests := []struct {
		ssh, server, host, port string
		wantErr                 bool
	}{
		{"bastion.example.com:2222", "https://jg.example.com", "bastion.example.com", "2222", false},
		{":2222", "https://jg.example.com:8443", "jg.example.com", "2222", false},
		{"0.0.0.0:2222", "https://jg.example.com", "jg.example.com", "2222", false},
		{"", "https://jg.example.com:8443", "jg.example.com", "22", false},
		{"[::1]:2222", "https://jg.example.com", "::1", "2222", false},
		{"no-port", "https://jg.example.com", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.ssh, func(t *testing.T) {
			h, p, err := bastionAddress(ServerConfig{SSHAddress: tt.ssh}, tt.server)
			if (err != nil) != tt.wantErr || h != tt.host || p != tt.port {
				t.Fatalf("bastionAddress = %q %q %v", h, p, err)
			}
		})
	}
}

func TestParseServerURL(t *testing.T) {
	for in, ok := range map[string]bool{
		"https://jg.example.com":    true,
		"http://127.0.0.1:8443":     true,
		"http://localhost:8443":     true,
		"http://jg.example.com":     false,
		"ftp://jg.example.com":      false,
		"jg.example.com":            false,
		"https://":                  false,
		"https://jg.example.com/jg": true,
	} {
		if _, err := parseServerURL(in); (err == nil) != ok {
			t.Errorf("parseServerURL(%q) = %v, want ok=%v", in, err, ok)
		}
	}
}

func TestSSHConfigSnippet(t *testing.T) {
	s := SSHConfigSnippet(SnippetOptions{SSHDir: "/home/a b/.ssh/jumpgate", BastionHost: "bastion.example.com", BastionPort: "2222", User: "alice", Targets: []string{"web-1", "orders-db"}})
	for _, want := range []string{
		"Host jumpgate bastion.example.com\n", "HostName bastion.example.com", "Port 2222", "User alice",
		`IdentityFile "/home/a b/.ssh/jumpgate/id_ed25519"`, "Host web-1 orders-db\n    ProxyJump jumpgate\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("snippet lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "#Host") {
		t.Errorf("targets given but the block is commented:\n%s", s)
	}
	loop := SSHConfigSnippet(SnippetOptions{SSHDir: "/d", BastionHost: "127.0.0.1", BastionPort: "2222"})
	if !strings.Contains(loop, "Host jumpgate\n") || !strings.Contains(loop, "#Host TARGET1 TARGET2") {
		t.Errorf("loopback snippet:\n%s", loop)
	}
}

func TestFormatTTL(t *testing.T) {
	for d, want := range map[time.Duration]string{10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Minute: "1h30m", 45 * time.Second: "45s", 61 * time.Second: "1m1s"} {
		if got := formatTTL(d); got != want {
			t.Errorf("formatTTL(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestDiscoverErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json/v1/config":
			writeJSON(w, 503, map[string]string{"error": "maintenance"})
		case "/html/v1/config":
			w.WriteHeader(502)
			io.WriteString(w, "<html>\nbad gateway</html>")
		case "/empty/v1/config":
			w.WriteHeader(500)
		case "/ok/v1/config":
			io.WriteString(w, `{"issuer":"https://idp","client_id":"jumpgate","ssh_address":"b:2222"}`)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	tests := []struct{ path, msg string }{
		{"/json", "maintenance"},
		{"/html", "<html>"},
		{"/empty", "Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := Discover(ctx, srv.Client(), srv.URL+tt.path)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Message != tt.msg {
				t.Fatalf("Discover = %v, want message %q", err, tt.msg)
			}
		})
	}
	cfg, err := Discover(ctx, srv.Client(), srv.URL+"/ok/")
	if err != nil || cfg.Issuer != "https://idp" || cfg.SSHAddress != "b:2222" || strings.Join(cfg.Scopes, " ") != "openid email profile groups" {
		t.Fatalf("Discover = %+v, %v", cfg, err)
	}
}

func TestStatusNotLoggedIn(t *testing.T) {
	if _, err := Status(t.TempDir(), time.Now()); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("Status = %v, want ErrNotLoggedIn", err)
	}
	if _, _, _, err := LoadIdentity(t.TempDir()); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("LoadIdentity = %v, want ErrNotLoggedIn", err)
	}
}

func TestHTTPClientCAFile(t *testing.T) {
	if _, err := HTTPClient("/nonexistent.pem"); err == nil {
		t.Error("missing CA file accepted")
	}
	p := t.TempDir() + "/x.pem"
	if err := writeFile(p, "not pem"); err != nil {
		t.Fatal(err)
	}
	if _, err := HTTPClient(p); err == nil {
		t.Error("CA file without certificates accepted")
	}
}
