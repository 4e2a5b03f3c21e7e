package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every policy validation error.
var ErrInvalid = errors.New("policy: invalid")

// Policy is a validated policy file.
type Policy struct {
	Roles      []Role        `yaml:"roles"`
	Commands   CommandRules  `yaml:"commands"`
	Kubernetes KubeRules     `yaml:"kubernetes"`
	Requests   RequestPolicy `yaml:"requests"`
	Auditors   []Subjects    `yaml:"auditors"`
	Admins     []Subjects    `yaml:"admins"`

	commands compiledCommands
}

// Role grants logins and targets to the members of some groups.
type Role struct {
	Name   string   `yaml:"name"`
	Groups []string `yaml:"groups"`
	// Users names individual usernames that hold the role.
	Users []string `yaml:"users"`
	// Logins are the principals put into certificates.
	Logins  []string       `yaml:"logins"`
	Targets TargetSelector `yaml:"targets"`
	// Allow switches on forwarding features that are refused by default.
	Allow      Allow        `yaml:"allow"`
	SQL        SQLRules     `yaml:"sql"`
	Mask       MaskRules    `yaml:"mask"`
	Kubernetes KubeRules    `yaml:"kubernetes"`
	Commands   CommandRules `yaml:"commands"`
	// MaxCertTTL caps certificates of this role below the CA maximum.
	MaxCertTTL Duration `yaml:"max_cert_ttl"`

	Line     int `yaml:"-"`
	commands compiledCommands
}

// Allow lists features that a role may switch on.
type Allow struct {
	PortForwarding   bool `yaml:"port_forwarding"`   // permit-port-forwarding on target certs
	AgentForwarding  bool `yaml:"agent_forwarding"`  // auth-agent@openssh.com through the bastion
	RemoteForwarding bool `yaml:"remote_forwarding"` // tcpip-forward (-R)
	X11Forwarding    bool `yaml:"x11_forwarding"`
}

// TargetSelector picks targets by name or labels (either matches).
type TargetSelector struct {
	Names  []string          `yaml:"names"`
	Labels map[string]string `yaml:"labels"`
}

// Subjects matches identities by group or username.
type Subjects struct {
	Groups []string `yaml:"groups"`
	Users  []string `yaml:"users"`
}

// CommandRules are regular expressions over exec commands and interactive lines.
type CommandRules struct {
	Block  []string `yaml:"block"`
	Review []string `yaml:"review"`
}

// SQLRules name statement kinds (see SQLKinds).
type SQLRules struct {
	Block  []string `yaml:"block"`
	Review []string `yaml:"review"`
}

// MaskRules name columns and value detectors to mask in results.
type MaskRules struct {
	Columns  []string `yaml:"columns"`
	Patterns []string `yaml:"patterns"`
}

// KubeRules are Kubernetes request rules.
type KubeRules struct {
	Block  []KubeRule `yaml:"block"`
	Review []KubeRule `yaml:"review"`
	Mask   []KubeMask `yaml:"mask"`
}

// KubeRule matches API requests.
type KubeRule struct {
	Verbs      []string `yaml:"verbs"`
	Resources  []string `yaml:"resources"`
	APIGroups  []string `yaml:"apiGroups"`
	Namespaces []string `yaml:"namespaces"`
}

// KubeMask masks fields of a resource in responses.
type KubeMask struct {
	Resources []string `yaml:"resources"`
	Fields    []string `yaml:"fields"`
}

// RequestPolicy governs just-in-time access requests.
type RequestPolicy struct {
	Approvers   []Subjects `yaml:"approvers"`
	MaxDuration Duration   `yaml:"max_duration"`
}

// Duration reads "4h" style strings.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML records the role's line for error messages.
func (r *Role) UnmarshalYAML(n *yaml.Node) error {
	type plain Role
	var p plain
	if err := decodeStrict(n, &p); err != nil {
		return err
	}
	*r = Role(p)
	r.Line = n.Line
	return nil
}

// decodeStrict decodes a node and rejects unknown keys.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		// Line numbers in err are relative to the node; shift them.
		return fmt.Errorf("role at line %d: %w", n.Line, err)
	}
	return nil
}

// SQL statement kinds understood by sql.block / sql.review.
var SQLKinds = []string{
	"select", "insert", "update", "delete", "merge", "copy_from", "copy_to", "copy_program",
	"ddl", "create", "alter", "drop", "truncate", "grant", "revoke",
	"alter_role", "create_role", "drop_role", "do", "call", "execute", "prepare",
	"set", "transaction", "vacuum", "lock", "listen", "notify", "load", "other",
	"delete_without_where", "update_without_where", "superuser", "function_call", "all", "write",
}

// Mask pattern names understood by mask.patterns (custom ones are regexes
// written as "re:<expr>").
var MaskPatterns = []string{"credit_card", "email", "us_ssn", "iban", "phone"}

// Kubernetes verbs.
var KubeVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*"}

// Load reads and validates a policy file.
func Load(file string) (*Policy, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return p, nil
}

// Parse decodes and validates a policy; any error rejects it whole.
func Parse(b []byte) (*Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *Policy) validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	names := map[string]bool{}
	var err error
	if p.commands, err = compileCommands(p.Commands); err != nil {
		add("commands: %v", err)
	}
	if err := validateKube(p.Kubernetes); err != nil {
		add("kubernetes: %v", err)
	}
	for i := range p.Roles {
		r := &p.Roles[i]
		where := fmt.Sprintf("role %q (line %d)", r.Name, r.Line)
		if r.Name == "" {
			add("role at line %d: name is required", r.Line)
		}
		if names[r.Name] {
			add("%s: duplicate role name", where)
		}
		names[r.Name] = true
		for _, l := range r.Logins {
			if !validLogin(l) {
				add("%s: login %q is not a valid user name", where, l)
			}
		}
		for _, k := range append(slices.Clone(r.SQL.Block), r.SQL.Review...) {
			if !slices.Contains(SQLKinds, k) {
				add("%s: unknown sql kind %q (known: %s)", where, k, strings.Join(SQLKinds, ", "))
			}
		}
		for _, c := range r.Mask.Columns {
			if strings.Count(c, ".") != 1 || strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".") {
				add("%s: mask column %q must be table.column (either may be *)", where, c)
			}
		}
		for _, m := range r.Mask.Patterns {
			if rest, ok := strings.CutPrefix(m, "re:"); ok {
				if _, err := regexp.Compile(rest); err != nil {
					add("%s: mask pattern %q: %v", where, m, err)
				}
			} else if !slices.Contains(MaskPatterns, m) {
				add("%s: unknown mask pattern %q (known: %s, or re:<regex>)", where, m, strings.Join(MaskPatterns, ", "))
			}
		}
		if err := validateKube(r.Kubernetes); err != nil {
			add("%s: kubernetes: %v", where, err)
		}
		if r.commands, err = compileCommands(r.Commands); err != nil {
			add("%s: commands: %v", where, err)
		}
		for _, g := range r.Targets.Names {
			if _, err := path.Match(g, ""); err != nil {
				add("%s: target name pattern %q: %v", where, g, err)
			}
		}
	}
	if p.Requests.MaxDuration < 0 {
		add("requests.max_duration must be positive")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(errs, "\n  "))
	}
	return nil
}

func validateKube(k KubeRules) error {
	var errs []string
	for _, r := range append(slices.Clone(k.Block), k.Review...) {
		if len(r.Verbs) == 0 || len(r.Resources) == 0 {
			errs = append(errs, "a rule needs verbs and resources")
		}
		for _, v := range r.Verbs {
			if !slices.Contains(KubeVerbs, v) {
				errs = append(errs, fmt.Sprintf("unknown verb %q", v))
			}
		}
	}
	for _, m := range k.Mask {
		if len(m.Resources) == 0 || len(m.Fields) == 0 {
			errs = append(errs, "a mask needs resources and fields")
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

var loginRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

func validLogin(s string) bool { return loginRE.MatchString(s) }

// Identity is who is asking: the username and groups from the IdP, and any
// roles granted directly (machine identities).
type Identity struct {
	User   string
	Groups []string
	Roles  []string
	// Grants are approved just-in-time access windows.
	Grants []Grant
	// Now is the time grants are judged at (zero: time.Now).
	Now time.Time
}

// Grant is an approved just-in-time access window to one target.
type Grant struct {
	Target string
	Until  time.Time
}

func (id Identity) now() time.Time {
	if id.Now.IsZero() {
		return time.Now()
	}
	return id.Now
}

// granted reports whether id holds a live grant for target.
func (id Identity) granted(target string) bool {
	now := id.now()
	for _, g := range id.Grants {
		if g.Target == target && now.Before(g.Until) {
			return true
		}
	}
	return false
}

// HasAccess reports whether id may get a certificate at all: it holds a
// role or a live just-in-time grant.
func (p *Policy) HasAccess(id Identity) bool {
	if len(p.RolesFor(id)) > 0 {
		return true
	}
	now := id.now()
	for _, g := range id.Grants {
		if now.Before(g.Until) {
			return true
		}
	}
	return false
}

func (s Subjects) match(id Identity) bool {
	if slices.Contains(s.Users, id.User) {
		return true
	}
	for _, g := range s.Groups {
		if slices.Contains(id.Groups, g) {
			return true
		}
	}
	return false
}

func anyMatch(ss []Subjects, id Identity) bool {
	for _, s := range ss {
		if s.match(id) {
			return true
		}
	}
	return false
}

// RolesFor returns the roles id holds, in policy order.
func (p *Policy) RolesFor(id Identity) []*Role {
	var out []*Role
	for i := range p.Roles {
		r := &p.Roles[i]
		if slices.Contains(id.Roles, r.Name) || slices.Contains(r.Users, id.User) {
			out = append(out, r)
			continue
		}
		for _, g := range r.Groups {
			if slices.Contains(id.Groups, g) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// Logins returns the sorted union of logins of id's roles.
func (p *Policy) Logins(id Identity) []string {
	set := map[string]bool{}
	for _, r := range p.RolesFor(id) {
		for _, l := range r.Logins {
			set[l] = true
		}
	}
	out := make([]string, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// IsAuditor reports whether id may see every session and the audit log.
func (p *Policy) IsAuditor(id Identity) bool { return anyMatch(p.Auditors, id) }

// IsAdmin reports whether id may revoke, write KRLs and sign host keys.
func (p *Policy) IsAdmin(id Identity) bool { return anyMatch(p.Admins, id) }

// IsApprover reports whether id may approve requests.
func (p *Policy) IsApprover(id Identity) bool { return anyMatch(p.Requests.Approvers, id) }

// Target is what policy needs to know about an inventory target.
type Target struct {
	Name   string
	Kind   string
	Labels map[string]string
}

// Selects reports whether the selector picks t.
func (s TargetSelector) Selects(t Target) bool {
	for _, n := range s.Names {
		if ok, _ := path.Match(n, t.Name); ok {
			return true
		}
	}
	if len(s.Labels) > 0 {
		for k, v := range s.Labels {
			if t.Labels[k] != v && v != "*" {
				return false
			}
			if _, ok := t.Labels[k]; !ok {
				return false
			}
		}
		return true
	}
	return false
}

// RolesReaching returns id's roles that reach t.
func (p *Policy) RolesReaching(id Identity, t Target) []*Role {
	var out []*Role
	for _, r := range p.RolesFor(id) {
		if r.Targets.Selects(t) {
			out = append(out, r)
		}
	}
	return out
}

// Access is the decision on reaching a target.
type Access struct {
	Allowed bool
	Roles   []*Role
	// Logins are the logins id may use on the target.
	Logins []string
	Allow  Allow
}

// AccessTo decides whether id reaches t, with which logins and features.
// A live just-in-time grant for t opens it with the logins of all of id's
// roles (the same accounts, one more target, for the approved window).
func (p *Policy) AccessTo(id Identity, t Target) Access {
	roles := p.RolesReaching(id, t)
	a := Access{Allowed: len(roles) > 0, Roles: roles}
	set := map[string]bool{}
	if id.granted(t.Name) {
		a.Allowed = true
		for _, l := range p.Logins(id) {
			set[l] = true
		}
	}
	for _, r := range roles {
		for _, l := range r.Logins {
			set[l] = true
		}
		a.Allow.PortForwarding = a.Allow.PortForwarding || r.Allow.PortForwarding
		a.Allow.AgentForwarding = a.Allow.AgentForwarding || r.Allow.AgentForwarding
		a.Allow.RemoteForwarding = a.Allow.RemoteForwarding || r.Allow.RemoteForwarding
		a.Allow.X11Forwarding = a.Allow.X11Forwarding || r.Allow.X11Forwarding
	}
	for l := range set {
		a.Logins = append(a.Logins, l)
	}
	sort.Strings(a.Logins)
	return a
}

// Features returns the union of Allow over all of id's roles.
func (p *Policy) Features(id Identity) Allow {
	var a Allow
	for _, r := range p.RolesFor(id) {
		a.PortForwarding = a.PortForwarding || r.Allow.PortForwarding
		a.AgentForwarding = a.AgentForwarding || r.Allow.AgentForwarding
		a.RemoteForwarding = a.RemoteForwarding || r.Allow.RemoteForwarding
		a.X11Forwarding = a.X11Forwarding || r.Allow.X11Forwarding
	}
	return a
}

// MaxCertTTL returns the smallest role cap on certificate lifetime (0: none).
func (p *Policy) MaxCertTTL(id Identity) time.Duration {
	var m time.Duration
	for _, r := range p.RolesFor(id) {
		if d := time.Duration(r.MaxCertTTL); d > 0 && (m == 0 || d < m) {
			m = d
		}
	}
	return m
}
