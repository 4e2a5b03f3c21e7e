package kube

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jumpgate/jumpgate/policy"
)

// ErrUnclassifiable is wrapped by every Classify error: the request cannot
// be classified unambiguously and is answered 400.
var ErrUnclassifiable = errors.New("kube: request cannot be classified")

// RequestInfo is one API request as kube-apiserver's RequestInfoFactory
// classifies it.
type RequestInfo struct {
	policy.KubeRequest
	// IsResource is false for non-resource paths (/version, /healthz,
	// /api, /apis/group discovery, /openapi/...), whose Verb is the
	// lower-case HTTP method.
	IsResource bool
	APIVersion string
	// Connect is true for exec, attach, portforward and proxy, whose verb
	// is create whatever the HTTP method.
	Connect bool
}

// allowedMethods are the methods kube-apiserver maps to verbs; any other
// is refused.
var allowedMethods = map[string]string{
	"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
}

// connectSubresources are the subresources whose verb is create whatever
// the method (kubectl's WebSocket exec is a GET).
var connectSubresources = map[string]bool{"exec": true, "attach": true, "portforward": true, "proxy": true}

// Classify classifies a request from its method and URL, after
// percent-decoding, the way kube-apiserver does. It refuses what kube-apiserver
// could read differently from the way it is checked: encoded slashes,
// empty, "." and ".." segments, unknown methods and unparsable queries.
func Classify(method string, u *url.URL) (RequestInfo, error) {
	var ri RequestInfo
	verb, ok := allowedMethods[method]
	if !ok {
		return ri, fmt.Errorf("%w: method %q", ErrUnclassifiable, method)
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return ri, fmt.Errorf("%w: path %q is not absolute", ErrUnclassifiable, u.Path)
	}
	esc := u.EscapedPath()
	if strings.Contains(strings.ToLower(esc), "%2f") || strings.Contains(strings.ToLower(esc), "%5c") {
		return ri, fmt.Errorf("%w: encoded slash in path", ErrUnclassifiable)
	}
	p := u.Path
	if p != "/" {
		trimmed := strings.TrimSuffix(p[1:], "/")
		for _, seg := range strings.Split(trimmed, "/") {
			switch seg {
			case "", ".", "..":
				return ri, fmt.Errorf("%w: empty, . or .. segment in %q", ErrUnclassifiable, p)
			}
			if strings.ContainsAny(seg, "\\\x00") || strings.ContainsFunc(seg, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return ri, fmt.Errorf("%w: control character or backslash in path", ErrUnclassifiable)
			}
		}
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return ri, fmt.Errorf("%w: query: %w", ErrUnclassifiable, err)
	}

	parts := splitPath(p)
	nonResource := func() (RequestInfo, error) {
		ri = RequestInfo{}
		ri.Verb = strings.ToLower(method)
		return ri, nil
	}
	if len(parts) == 0 {
		return nonResource()
	}
	switch parts[0] {
	case "api":
		if len(parts) < 2 {
			return nonResource()
		}
		ri.APIVersion = parts[1]
		parts = parts[2:]
	case "apis":
		if len(parts) < 3 {
			return nonResource()
		}
		ri.APIGroup = parts[1]
		ri.APIVersion = parts[2]
		parts = parts[3:]
	default:
		return nonResource()
	}
	if len(parts) == 0 {
		return nonResource()
	}

	ri.IsResource = true
	special := ""
	if parts[0] == "proxy" || parts[0] == "watch" {
		if len(parts) < 2 {
			return ri, fmt.Errorf("%w: %s without a resource", ErrUnclassifiable, parts[0])
		}
		special = parts[0]
		ri.Verb = parts[0]
		parts = parts[1:]
	} else {
		ri.Verb = verb
	}

	if parts[0] == "namespaces" {
		if len(parts) > 1 {
			ri.Namespace = parts[1]
			if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
				parts = parts[2:]
			}
		}
	}

	if len(parts) >= 1 {
		ri.Resource = parts[0]
	}
	if len(parts) >= 2 {
		ri.Name = parts[1]
	}
	if len(parts) >= 3 && special != "proxy" {
		ri.Subresource = parts[2]
	}

	if ri.Name == "" && ri.Verb == "get" {
		if isTrue(query["watch"]) {
			ri.Verb = "watch"
		} else {
			ri.Verb = "list"
		}
		if fs := query.Get("fieldSelector"); fs != "" {
			if name, ok := exactName(fs); ok {
				ri.Name = name
			}
		}
	}
	if ri.Name == "" && ri.Verb == "delete" {
		ri.Verb = "deletecollection"
	}

	// The deprecated /proxy/ prefix proxies to the named object: treat it
	// as its proxy subresource.
	if special == "proxy" {
		ri.Subresource = "proxy"
	}
	if connectSubresources[ri.Subresource] {
		ri.Connect = true
		ri.Verb = "create"
	}
	return ri, nil
}

// splitPath splits a path the way kube-apiserver does.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// isTrue decodes a boolean query parameter the way kube-apiserver does:
// absent, "false" and "0" are false; any other value, empty included, is
// true.
func isTrue(v []string) bool {
	if len(v) == 0 {
		return false
	}
	switch strings.ToLower(v[0]) {
	case "false", "0":
		return false
	}
	return true
}

// exactName returns the name a field selector pins with metadata.name=X
// or metadata.name==X, if it pins one.
func exactName(fs string) (string, bool) {
	for _, term := range strings.Split(fs, ",") {
		term = strings.TrimSpace(term)
		for _, op := range []string{"==", "="} {
			if k, v, ok := strings.Cut(term, op); ok && strings.TrimSpace(k) == "metadata.name" && !strings.HasPrefix(v, "=") {
				v = strings.TrimSpace(v)
				if v != "" && !strings.ContainsAny(v, "/%") && v != "." && v != ".." {
					return v, true
				}
				return "", false
			}
		}
	}
	return "", false
}
