package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../contrib/config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CA.UserCertTTL.D() != 10*time.Minute || len(c.Targets) != 2 || !c.Targets[0].Recorded() || c.Targets[1].Recorded() {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestReplicasExampleConfigLoads(t *testing.T) {
	c, err := Load("../contrib/config.replicas.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Storage, "postgres://") || c.ReplicaLease.D() != 15*time.Second || len(c.Targets) != 2 {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestTrustedCAKeysValidated(t *testing.T) {
	_, err := Parse([]byte("oidc: {issuer: https://idp.example.com, client_id: jg}\nca: {trusted_user_ca_keys: [\"not a key\"]}\n"))
	if err == nil || !strings.Contains(err.Error(), "trusted_user_ca_keys[0]") {
		t.Fatalf("a malformed trusted key: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("oidc: {issuer: https://idp.example.com, client_id: jg}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.SSH != ":2222" || c.Listen.HTTPS != ":8443" || c.Storage != "bolt" || c.CA.MaxUserCertTTL.D() != time.Hour || !c.RecordingsFailClosed() ||
		c.Bastion.MaxStartups != 100 || c.Bastion.PerSourceMaxStartups != 20 || c.Bastion.MaxChannels != 100 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestInvalidConfigs(t *testing.T) {
	base := "oidc: {issuer: https://idp.example.com, client_id: jg}\n"
	tests := []struct{ name, src, want string }{
		{"unknown key", base + "listne: {}\n", "listne"},
		{"http issuer off loopback", "oidc: {issuer: http://idp.example.com, client_id: jg}\n", "loopback"},
		{"ttl above max", base + "ca: {user_cert_ttl: 2h, max_user_cert_ttl: 1h}\n", "above"},
		{"bad duration", base + "ca: {user_cert_ttl: soon}\n", "duration"},
		{"target name is an IP", base + "targets: [{name: 10.0.0.1, kind: ssh, address: '10.0.0.1:22'}]\n", "IP"},
		{"bad target name", base + "targets: [{name: 'Web 1', kind: ssh, address: 'a:22'}]\n", "name"},
		{"duplicate target", base + "targets: [{name: a, kind: ssh, address: 'a:22'}, {name: a, kind: ssh, address: 'b:22'}]\n", "duplicate"},
		{"unknown kind", base + "targets: [{name: a, kind: ftp, address: 'a:21'}]\n", "kind"},
		{"address without port", base + "targets: [{name: a, kind: ssh, address: a}]\n", "host:port"},
		{"local without user", base + "targets: [{name: a, kind: local}]\n", "user"},
		{"bad pg tls", base + "targets: [{name: db, kind: postgres, address: 'db:5432', tls: maybe}]\n", "tls"},
		{"bad storage", base + "storage: mysql://x\n", "storage"},
		{"tls half", base + "tls: {cert_file: a}\n", "tls"},
		{"negative max_channels", base + "bastion: {max_channels: -1}\n", "max_channels must not be negative"},
		{"per-source above total", base + "bastion: {max_startups: 10, per_source_max_startups: 11}\n", "per_source_max_startups (11) is above"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil || !errors.Is(err, ErrInvalid) && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("oidc: {issuer: https://i, client_id: c}\ntargets: [{name: a, kind: ssh, address: 'a:22'}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}
