package policy

import (
	"fmt"
	"slices"
	"strings"
)

// KubeRequest is what Kubernetes rules are evaluated against: one API
// request as kube-apiserver classifies it. Resource is empty for
// non-resource requests (/version, /healthz, discovery), which no rule
// matches.
type KubeRequest struct {
	Verb        string
	APIGroup    string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
}

// ResourcePath returns r's resource as rules name it: "resource" or
// "resource/subresource".
func (r KubeRequest) ResourcePath() string {
	if r.Subresource == "" {
		return r.Resource
	}
	return r.Resource + "/" + r.Subresource
}

// KubeDecider evaluates the Kubernetes rules a user has on one target: the
// top-level ones plus those of every role that reaches it. Block beats
// review.
type KubeDecider struct {
	block, review []KubeRule
	mask          []KubeMask
}

// KubeRules returns the Kubernetes rules id has on t.
func (p *Policy) KubeRules(id Identity, t Target) KubeDecider {
	d := KubeDecider{
		block:  slices.Clone(p.Kubernetes.Block),
		review: slices.Clone(p.Kubernetes.Review),
		mask:   slices.Clone(p.Kubernetes.Mask),
	}
	for _, r := range p.RolesReaching(id, t) {
		d.block = append(d.block, r.Kubernetes.Block...)
		d.review = append(d.review, r.Kubernetes.Review...)
		d.mask = append(d.mask, r.Kubernetes.Mask...)
	}
	return d
}

// Decide returns the decision on one request.
func (d KubeDecider) Decide(r KubeRequest) Decision {
	for _, rule := range d.block {
		if rule.Matches(r) {
			return Decision{Action: ActionBlock, Rule: rule.String(), Matched: describeKube(r),
				Reason: fmt.Sprintf("%s is blocked by policy (kubernetes.block: %s)", describeKube(r), rule)}
		}
	}
	for _, rule := range d.review {
		if rule.Matches(r) {
			return Decision{Action: ActionReview, Rule: rule.String(), Matched: describeKube(r),
				Reason: fmt.Sprintf("%s needs approval (kubernetes.review: %s)", describeKube(r), rule)}
		}
	}
	return Decision{Action: ActionAllow}
}

// MaskFields returns the fields to mask in responses carrying resource
// (a plain resource name such as "secrets"; subresources are masked as
// their parent resource), sorted and without duplicates.
func (d KubeDecider) MaskFields(resource string) []string {
	resource = strings.ToLower(resource)
	var out []string
	for _, m := range d.mask {
		for _, res := range m.Resources {
			res = strings.ToLower(res)
			if base, _, ok := strings.Cut(res, "/"); ok {
				res = base
			}
			if res == "*" || res == resource {
				out = append(out, m.Fields...)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Matches reports whether rule covers r. Verbs, resources and API groups
// compare case-insensitively; "*" matches anything. A resource entry
// "pods" matches only the pods resource itself (as in RBAC), "pods/exec"
// that subresource, "pods/*" any subresource and "*/exec" exec of any
// resource. Without apiGroups a rule matches every group; without
// namespaces every namespace (and cluster-scoped requests).
func (rule KubeRule) Matches(r KubeRequest) bool {
	if r.Resource == "" {
		return false
	}
	if !anyEqualFold(rule.Verbs, r.Verb) {
		return false
	}
	if len(rule.APIGroups) > 0 && !anyEqualFold(rule.APIGroups, r.APIGroup) {
		return false
	}
	if len(rule.Namespaces) > 0 && !anyEqualFold(rule.Namespaces, r.Namespace) {
		return false
	}
	for _, res := range rule.Resources {
		base, sub, hasSub := strings.Cut(res, "/")
		if base != "*" && !strings.EqualFold(base, r.Resource) {
			continue
		}
		switch {
		case base == "*" && !hasSub:
			return true
		case !hasSub:
			if r.Subresource == "" {
				return true
			}
		case r.Subresource != "" && (sub == "*" || strings.EqualFold(sub, r.Subresource)):
			return true
		}
	}
	return false
}

func (rule KubeRule) String() string {
	s := fmt.Sprintf("verbs %s on %s", strings.Join(rule.Verbs, ","), strings.Join(rule.Resources, ","))
	if len(rule.APIGroups) > 0 {
		s += " in apiGroups " + strings.Join(rule.APIGroups, ",")
	}
	if len(rule.Namespaces) > 0 {
		s += " in namespaces " + strings.Join(rule.Namespaces, ",")
	}
	return s
}

func anyEqualFold(list []string, s string) bool {
	for _, v := range list {
		if v == "*" || strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func describeKube(r KubeRequest) string {
	s := r.Verb + " " + r.ResourcePath()
	if r.Name != "" {
		s += " " + r.Name
	}
	if r.Namespace != "" && !strings.EqualFold(r.Resource, "namespaces") {
		s += " in namespace " + r.Namespace
	}
	return s
}
