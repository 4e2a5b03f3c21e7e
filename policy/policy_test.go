package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const samplePolicy = `
roles:
  - name: dev
    groups: [engineering]
    logins: [ubuntu]
    targets: {labels: {env: staging}}
  - name: dba
    groups: [dba]
    targets: {names: [orders-db]}
    sql:
      block: [drop, truncate, alter_role, delete_without_where, update_without_where]
      review: [ddl]
    mask:
      columns: ["*.ssn", "customers.email", "*.card_number"]
      patterns: [credit_card, email, us_ssn]
  - name: deployer
    logins: [deploy]
    targets: {names: ["web-*"]}
    allow: {port_forwarding: true}
commands:
  block: ['^\s*rm\s+-rf\s+/(\s|$)', '^\s*(shutdown|reboot|halt)\b', 'mkfs']
  review: ['^\s*sudo\b']
kubernetes:
  block: [{verbs: [delete], resources: [namespaces]}]
requests:
  approvers: [{groups: [sre-leads]}]
  max_duration: 4h
auditors: [{groups: [security]}]
admins: [{groups: [sre-leads]}]
`

func mustParse(t *testing.T, s string) *Policy {
	t.Helper()
	p, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestRolesAndAccess(t *testing.T) {
	p := mustParse(t, samplePolicy)
	alice := Identity{User: "alice@example.com", Groups: []string{"engineering"}}
	bob := Identity{User: "bob@example.com", Groups: []string{"dba", "engineering"}}
	ci := Identity{User: "repo:acme/deploy", Roles: []string{"deployer"}}
	nobody := Identity{User: "eve@example.com", Groups: []string{"marketing"}}
	staging := Target{Name: "web-1", Kind: "ssh", Labels: map[string]string{"env": "staging"}}
	prod := Target{Name: "web-2", Kind: "ssh", Labels: map[string]string{"env": "prod"}}
	db := Target{Name: "orders-db", Kind: "postgres"}
	tests := []struct {
		name    string
		id      Identity
		t       Target
		allowed bool
		logins  string
	}{
		{"dev reaches staging", alice, staging, true, "ubuntu"},
		{"dev does not reach prod", alice, prod, false, ""},
		{"dba reaches db", bob, db, true, ""},
		{"dev does not reach db", alice, db, false, ""},
		{"machine role by name glob", ci, prod, true, "deploy"},
		{"no role", nobody, staging, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := p.AccessTo(tc.id, tc.t)
			if a.Allowed != tc.allowed || strings.Join(a.Logins, ",") != tc.logins {
				t.Fatalf("AccessTo = %v %v, want %v %q", a.Allowed, a.Logins, tc.allowed, tc.logins)
			}
		})
	}
	if got := p.Logins(bob); strings.Join(got, ",") != "ubuntu" {
		t.Errorf("Logins(bob) = %v", got)
	}
	if !p.IsApprover(Identity{Groups: []string{"sre-leads"}}) || p.IsApprover(alice) {
		t.Error("approver matching wrong")
	}
	if !p.Features(ci).PortForwarding || p.Features(alice).PortForwarding {
		t.Error("features wrong")
	}
}

func TestInvalidPolicyRejectedWhole(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"unknown key", "roles:\n  - name: a\n    grups: [x]\n", "line"},
		{"bad regex", "commands:\n  block: ['(']\n", "commands"},
		{"unknown sql kind", "roles:\n  - name: a\n    sql: {block: [dropp]}\n", "dropp"},
		{"bad mask column", "roles:\n  - name: a\n    mask: {columns: [ssn]}\n", "table.column"},
		{"bad verb", "kubernetes:\n  block: [{verbs: [nuke], resources: [pods]}]\n", "nuke"},
		{"duplicate role", "roles:\n  - name: a\n  - name: a\n", "duplicate"},
		{"bad login", "roles:\n  - name: a\n    logins: ['root; rm']\n", "login"},
		{"top-level typo", "rolez: []\n", "rolez"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCommandRulesResistBypass(t *testing.T) {
	p := mustParse(t, samplePolicy)
	id := Identity{User: "alice", Groups: []string{"engineering"}}
	tgt := Target{Name: "web-1", Labels: map[string]string{"env": "staging"}}
	tests := []struct {
		cmd  string
		want Action
	}{
		{"ls -la /", ActionAllow},
		{"rm -rf /tmp/x", ActionAllow},
		{"echo 'rm -rf /'", ActionAllow},
		{"rm -rf /", ActionBlock},
		{"  rm   -rf   / ", ActionBlock},
		{"/bin/rm -rf /", ActionBlock},
		{"'rm' -rf /", ActionBlock},
		{`r\m -rf /`, ActionBlock},
		{`"rm" "-rf" "/"`, ActionBlock},
		{"rm -r -f /", ActionBlock},
		{"rm -fr /", ActionBlock},
		{"echo hi; rm -rf /", ActionBlock},
		{"true && rm -rf /", ActionBlock},
		{"false || rm -rf /", ActionBlock},
		{"ls | rm -rf /", ActionBlock},
		{"(rm -rf /)", ActionBlock},
		{"{ rm -rf /; }", ActionBlock},
		{"echo $(rm -rf /)", ActionBlock},
		{"echo `rm -rf /`", ActionBlock},
		{"bash -c 'rm -rf /'", ActionBlock},
		{"sh -c \"echo x && rm -rf /\"", ActionBlock},
		{"/usr/bin/env FOO=1 rm -rf /", ActionBlock},
		{"nohup nice -n 5 rm -rf /", ActionBlock},
		{"eval 'rm -rf /'", ActionBlock},
		{"bash <<EOF\nrm -rf /\nEOF", ActionBlock},
		{"if true; then rm -rf /; fi", ActionBlock},
		{"for i in 1; do reboot; done", ActionBlock},
		{"/sbin/shutdown -h now", ActionBlock},
		{"mkfs.ext4 /dev/sda", ActionBlock},
		{"sudo ls", ActionReview},
		{"/usr/bin/sudo ls", ActionReview},
		{"sudo rm -rf /", ActionBlock},
		{"sudo -u root reboot", ActionBlock},
		{"echo 'unterminated", ActionAllow},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			d := p.CheckCommand(id, tgt, tc.cmd)
			if d.Action != tc.want {
				t.Fatalf("CheckCommand(%q) = %v (rule %q, matched %q), want %v; candidates %q", tc.cmd, d.Action, d.Rule, d.Matched, tc.want, CommandCandidates(tc.cmd))
			}
		})
	}
}

func FuzzCheckCommand(f *testing.F) {
	p, err := Parse([]byte(samplePolicy))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"rm -rf /", "bash -c 'x'", "a <<EOF\nb\nEOF", "$(`(", "eval eval eval eval eval eval rm"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = p.CheckCommand(Identity{}, Target{}, s)
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(samplePolicy))
	f.Add([]byte("roles: [{name: a, logins: [x]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err == nil && p == nil {
			t.Fatal("nil policy without error")
		}
	})
}

func TestExamplePolicyLoads(t *testing.T) {
	if _, err := Load("../contrib/policy.example.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestReloadKeepsOldPolicyOnError(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/p.yaml"
	if err := os.WriteFile(file, []byte(samplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(file)
	if err != nil {
		t.Fatal(err)
	}
	old := s.Current()
	os.WriteFile(file, []byte("roles:\n  - name: x\n    logins: ['bad login']\n"), 0o600)
	if changed, err := s.Reload(); err == nil || changed || s.Current() != old {
		t.Fatalf("invalid policy replaced the old one: changed=%v err=%v", changed, err)
	}
	os.WriteFile(file, []byte("roles:\n  - name: x\n    groups: [g]\n    logins: [ok]\n"), 0o600)
	if changed, err := s.Reload(); err != nil || !changed || len(s.Current().Roles) != 1 {
		t.Fatalf("valid policy not loaded: %v %v", changed, err)
	}
}

func TestJustInTimeGrant(t *testing.T) {
	p := mustParse(t, samplePolicy)
	now := time.Unix(1_000_000, 0)
	prod := Target{Name: "web-2", Kind: "ssh", Labels: map[string]string{"env": "prod"}}
	alice := Identity{User: "alice", Groups: []string{"engineering"}, Now: now}
	if p.AccessTo(alice, prod).Allowed {
		t.Fatal("prod reachable without a grant")
	}
	alice.Grants = []Grant{{Target: "web-2", Until: now.Add(time.Hour)}}
	if a := p.AccessTo(alice, prod); !a.Allowed || strings.Join(a.Logins, ",") != "ubuntu" {
		t.Fatalf("grant: %+v", a)
	}
	if p.AccessTo(alice, Target{Name: "web-3", Labels: map[string]string{"env": "prod"}}).Allowed {
		t.Fatal("a grant for web-2 opened web-3")
	}
	alice.Now = now.Add(time.Hour)
	if p.AccessTo(alice, prod).Allowed {
		t.Fatal("grant still open after its window")
	}
	nobody := Identity{User: "eve", Grants: []Grant{{Target: "web-2", Until: now.Add(time.Minute)}}, Now: now}
	if !p.HasAccess(nobody) || p.HasAccess(Identity{User: "eve", Now: now}) {
		t.Fatal("HasAccess wrong")
	}
}
