package bastion

import (
	"net"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/config"
)

func TestResolveTargetRefusesEverythingButTargetNames(t *testing.T) {
	targets := []config.Target{
		{Name: "web-1", Kind: config.KindSSH, Address: "10.0.0.5:22"},
		{Name: "orders-db", Kind: config.KindPostgres, Address: "10.0.0.7:6432"},
		{Name: "prod-k8s", Kind: config.KindKubernetes, Address: "10.0.0.9:6443"},
		{Name: "demo", Kind: config.KindLocal, User: "u"},
	}
	tests := []struct {
		host string
		port uint32
		ok   bool
	}{
		{"web-1", 22, true},
		{"WEB-1", 22, true},
		{"web-1.", 22, true},
		{"web-1", 2222, false},
		{"web-1", 0, false},
		{"web-1", 70000, false},
		{"orders-db", 5432, true},
		{"orders-db", 6432, true},
		{"orders-db", 22, false},
		{"prod-k8s", 443, true},
		{"prod-k8s", 6443, false},
		{"demo", 22, true},
		// The address of a target is not a way in.
		{"10.0.0.5", 22, false},
		// IP literals in every notation, loopback, metadata, DNS names.
		{"127.0.0.1", 22, false},
		{"2130706433", 22, false},
		{"0x7f000001", 22, false},
		{"0177.0.0.1", 22, false},
		{"127.1", 22, false},
		{"::1", 22, false},
		{"[::1]", 22, false},
		{"::ffff:127.0.0.1", 22, false},
		{"localhost", 22, false},
		{"169.254.169.254", 80, false},
		{"metadata.google.internal", 80, false},
		{"web-1.example.com", 22, false},
		{"web-1\x00", 22, false},
		{"web-1 ", 22, false},
		{"web-*", 22, false},
		{"", 22, false},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			_, ref := resolveTarget(targets, tc.host, tc.port)
			if (ref == nil) != tc.ok {
				t.Fatalf("resolveTarget(%q, %d) refusal=%v, want ok=%v", tc.host, tc.port, ref, tc.ok)
			}
		})
	}
}

func TestSourceAddress(t *testing.T) {
	addr := &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 4000}
	tests := []struct {
		list string
		ok   bool
	}{
		{"", true},
		{"192.0.2.0/24", true},
		{"192.0.2.10", true},
		{"198.51.100.0/24,192.0.2.10/32", true},
		{"198.51.100.0/24", false},
		{"not-an-address", false},
	}
	for _, tc := range tests {
		if err := checkSourceAddress(addr, tc.list); (err == nil) != tc.ok {
			t.Errorf("checkSourceAddress(%q) = %v, want ok=%v", tc.list, err, tc.ok)
		}
	}
}

func TestEnvAllowlist(t *testing.T) {
	for name, ok := range map[string]bool{"LANG": true, "LC_ALL": true, "TZ": true, "LD_PRELOAD": false, "PATH": false, "BASH_ENV": false, "TERM": false} {
		if envAllowed(name) != ok {
			t.Errorf("envAllowed(%s) != %v", name, ok)
		}
	}
}

func TestFailLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newFailLimiter(func() time.Time { return now })
	for i := 0; i < failMax; i++ {
		if !l.allowed("192.0.2.1") {
			t.Fatalf("refused after %d failures", i)
		}
		l.failed("192.0.2.1")
	}
	if l.allowed("192.0.2.1") {
		t.Fatal("not refused after failMax failures")
	}
	if !l.allowed("192.0.2.2") {
		t.Fatal("another source refused")
	}
	now = now.Add(failWindow + time.Second)
	if !l.allowed("192.0.2.1") {
		t.Fatal("still refused after the window")
	}
}

func FuzzResolveTarget(f *testing.F) {
	targets := []config.Target{{Name: "web-1", Kind: config.KindSSH, Address: "10.0.0.5:22"}}
	f.Add("web-1", uint32(22))
	f.Add("127.0.0.1", uint32(22))
	f.Fuzz(func(t *testing.T, host string, port uint32) {
		tg, ref := resolveTarget(targets, host, port)
		if ref == nil && tg.Name != "web-1" {
			t.Fatalf("resolved %q to %q", host, tg.Name)
		}
	})
}

// FuzzChannelPayloads decodes untrusted SSH request and channel payloads
// the way the bastion does.
func FuzzChannelPayloads(f *testing.F) {
	f.Add(gossh.Marshal(ptyReq{Term: "xterm", Cols: 80, Rows: 24}))
	f.Add(gossh.Marshal(directTCPIP{DestAddr: "web-1", DestPort: 22, OriginAddr: "127.0.0.1", OriginPort: 5000}))
	f.Add(gossh.Marshal(envReq{Name: "LANG", Value: "C"}))
	f.Add([]byte{0, 0, 0, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p ptyReq
		_ = gossh.Unmarshal(b, &p)
		var w windowChange
		_ = gossh.Unmarshal(b, &w)
		var e envReq
		if gossh.Unmarshal(b, &e) == nil {
			_ = envAllowed(e.Name)
		}
		var x execReq
		if gossh.Unmarshal(b, &x) == nil {
			_ = x.Command
		}
		var d directTCPIP
		if gossh.Unmarshal(b, &d) == nil {
			_, _ = resolveTarget([]config.Target{{Name: "web-1", Kind: config.KindSSH, Address: "10.0.0.5:22"}}, d.DestAddr, d.DestPort)
		}
	})
}

func TestPlainTyped(t *testing.T) {
	for in, want := range map[string]bool{
		"mkfs.x /dev/null; touch m":        true,
		"\x1b[200~echo a; mkfs x\x1b[201~": true,
		"ls\x7f\x7fmkfs":                   false,
		"\x1b[A":                           false,
		"ls\tx":                            false,
		"":                                 true,
		"caf\xc3\xa9":                      true,
	} {
		if _, ok := plainTyped([]byte(in)); ok != want {
			t.Errorf("plainTyped(%q) plain=%v, want %v", in, ok, want)
		}
	}
}
