package kube

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		method, target string
		want           string // verb|group|resource|sub|ns|name
		resource       bool
	}{
		{"GET", "/api/v1/namespaces/default/pods", "list||pods||default|", true},
		{"GET", "/api/v1/namespaces/default/pods?watch=true", "watch||pods||default|", true},
		{"GET", "/api/v1/namespaces/default/pods?watch", "watch||pods||default|", true},
		{"GET", "/api/v1/namespaces/default/pods?watch=0", "list||pods||default|", true},
		{"GET", "/api/v1/namespaces/default/pods?watch=FALSE", "list||pods||default|", true},
		{"GET", "/api/v1/watch/namespaces/default/pods/p1", "watch||pods||default|p1", true},
		{"GET", "/api/v1/namespaces/default/secrets/s1", "get||secrets||default|s1", true},
		{"GET", "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ds1", "list||secrets||default|s1", true},
		{"HEAD", "/api/v1/namespaces/default/secrets/s1", "get||secrets||default|s1", true},
		{"DELETE", "/api/v1/namespaces/prod", "delete||namespaces||prod|prod", true},
		{"DELETE", "/api/v1/namespaces/prod/", "delete||namespaces||prod|prod", true},
		{"DELETE", "/api/v1/namespaces", "deletecollection||namespaces|||", true},
		{"DELETE", "/api/v1/namespaces/prod/pods", "deletecollection||pods||prod|", true},
		{"PUT", "/api/v1/namespaces/prod/finalize", "update||namespaces|finalize|prod|prod", true},
		{"PUT", "/api/v1/namespaces/prod/status", "update||namespaces|status|prod|prod", true},
		{"GET", "/api/v1/namespaces/prod", "get||namespaces||prod|prod", true},
		{"POST", "/apis/apps/v1/namespaces/a/deployments", "create|apps|deployments||a|", true},
		{"PATCH", "/apis/apps/v1/namespaces/a/deployments/d/scale", "patch|apps|deployments|scale|a|d", true},
		{"GET", "/api/v1/namespaces/a/pods/p/exec?command=ls", "create||pods|exec|a|p", true},
		{"POST", "/api/v1/namespaces/a/pods/p/exec?command=ls", "create||pods|exec|a|p", true},
		{"GET", "/api/v1/namespaces/a/pods/p/attach", "create||pods|attach|a|p", true},
		{"GET", "/api/v1/namespaces/a/pods/p/portforward", "create||pods|portforward|a|p", true},
		{"GET", "/api/v1/namespaces/a/services/s/proxy/some/path", "create||services|proxy|a|s", true},
		{"GET", "/api/v1/proxy/namespaces/a/pods/p/x/y", "create||pods|proxy|a|p", true},
		{"GET", "/api/v1/nodes/n1/proxy/metrics", "create||nodes|proxy||n1", true},
		{"GET", "/api/v1/namespaces/de%66ault/secrets/s1", "get||secrets||default|s1", true},
		{"GET", "/api/v1/Namespaces/default/secrets", "get||Namespaces|secrets||default", true},
		{"GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "list|rbac.authorization.k8s.io|clusterroles|||", true},
		{"GET", "/version", "get|||||", false},
		{"GET", "/api", "get|||||", false},
		{"GET", "/api/v1", "get|||||", false},
		{"GET", "/apis/apps", "get|||||", false},
		{"POST", "/apis/apps/v1", "post|||||", false},
		{"GET", "/openapi/v2", "get|||||", false},
		{"GET", "/API/v1/namespaces/default/secrets", "get|||||", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			u, err := url.ParseRequestURI(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			ri, err := Classify(tt.method, u)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			got := strings.Join([]string{ri.Verb, ri.APIGroup, ri.Resource, ri.Subresource, ri.Namespace, ri.Name}, "|")
			if got != tt.want || ri.IsResource != tt.resource {
				t.Fatalf("got %q resource=%v, want %q resource=%v", got, ri.IsResource, tt.want, tt.resource)
			}
		})
	}
}

func TestClassifyRefusesAmbiguous(t *testing.T) {
	for _, tt := range []struct{ method, target string }{
		{"GET", "/api/v1/namespaces/default%2Fsecrets"},
		{"GET", "/api/v1/namespaces/default%2fsecrets"},
		{"DELETE", "/api/v1//namespaces/prod"},
		{"DELETE", "/api/v1/namespaces//prod"},
		{"DELETE", "/api/v1/namespaces/x/../prod"},
		{"DELETE", "/api/v1/namespaces/%2e%2e/namespaces/prod"},
		{"DELETE", "/api/v1/./namespaces/prod"},
		{"GET", "//api/v1/secrets"},
		{"GET", "/api/v1/namespaces/a/secrets/s%5C1"},
		{"GET", "/api/v1/namespaces/a/secrets/s%001"},
		{"OPTIONS", "/api/v1/namespaces"},
		{"CONNECT", "/api/v1/namespaces/a/pods/p/exec"},
		{"delete", "/api/v1/namespaces/prod"},
		{"PROPFIND", "/api/v1/namespaces"},
		{"GET", "/api/v1/namespaces/a/pods?watch=true;x=1"},
		{"GET", "/api/v1/watch"},
		{"GET", "/api/v1/proxy"},
	} {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			u, err := url.ParseRequestURI(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			if ri, err := Classify(tt.method, u); !errors.Is(err, ErrUnclassifiable) {
				t.Fatalf("Classify = %+v, %v; want ErrUnclassifiable", ri, err)
			}
		})
	}
}

// FuzzClassify checks that whatever Classify accepts, kube-apiserver's
// reading of the same decoded path agrees on the segments it used, and
// that no accepted path has an empty, dot or slash-bearing segment.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"/api/v1/namespaces/a/pods", "/apis/apps/v1/namespaces/a/deployments/d/scale",
		"/api/v1/namespaces/a/pods/p/exec?command=ls", "/api/v1//x", "/api/v1/namespaces/%2e%2e", "/api/v1/watch/pods?watch=0"} {
		f.Add("GET", s)
		f.Add("DELETE", s)
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		ri, err := Classify(method, u)
		if err != nil {
			if !errors.Is(err, ErrUnclassifiable) {
				t.Fatalf("error does not wrap ErrUnclassifiable: %v", err)
			}
			return
		}
		for _, seg := range []string{ri.Resource, ri.Subresource, ri.Namespace, ri.Name, ri.APIGroup} {
			if seg == "." || seg == ".." || strings.Contains(seg, "/") {
				t.Fatalf("accepted segment %q in %+v", seg, ri)
			}
		}
		if ri.IsResource && ri.Resource == "" {
			t.Fatalf("resource request without resource: %+v", ri)
		}
		if ri.Connect && ri.Verb != "create" {
			t.Fatalf("connect verb %q", ri.Verb)
		}
		if ri.IsResource && ri.Name == "" && (ri.Verb == "get" || ri.Verb == "delete") {
			t.Fatalf("collection verb not normalized: %+v", ri)
		}
	})
}
