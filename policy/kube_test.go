package policy

import (
	"slices"
	"testing"
)

func TestKubeRules(t *testing.T) {
	p := mustParse(t, `
roles:
  - name: sre
    groups: [sre]
    targets: {names: [prod-k8s]}
    kubernetes:
      review: [{verbs: [delete], resources: [namespaces]}]
      mask: [{resources: [configmaps], fields: [data, binaryData]}]
  - name: dev
    groups: [dev]
    targets: {names: [prod-k8s]}
    kubernetes:
      block: [{verbs: ["*"], resources: ["pods/*"], namespaces: [kube-system]}]
      review: [{verbs: [create], resources: [pods/exec]}, {verbs: [patch], resources: [deployments], apiGroups: [apps]}]
  - name: other
    groups: [sre]
    targets: {names: [other-k8s]}
    kubernetes:
      block: [{verbs: [get], resources: ["*"]}]
kubernetes:
  block: [{verbs: [delete, deletecollection], resources: [namespaces]}]
  mask: [{resources: [secrets], fields: [data, stringData]}]
`)
	prod := Target{Name: "prod-k8s", Kind: "kubernetes"}
	sre := Identity{User: "sam", Groups: []string{"sre"}}
	dev := Identity{User: "dee", Groups: []string{"dev"}}
	tests := []struct {
		name string
		id   Identity
		r    KubeRequest
		want Action
	}{
		{"top-level block beats role review", sre, KubeRequest{Verb: "delete", Resource: "namespaces", Name: "x"}, ActionBlock},
		{"deletecollection blocked", dev, KubeRequest{Verb: "deletecollection", Resource: "namespaces"}, ActionBlock},
		{"case does not escape", dev, KubeRequest{Verb: "DELETE", Resource: "Namespaces", Name: "x"}, ActionBlock},
		{"get namespaces allowed", dev, KubeRequest{Verb: "get", Resource: "namespaces", Name: "x"}, ActionAllow},
		{"subresource is not the resource", dev, KubeRequest{Verb: "delete", Resource: "namespaces", Subresource: "status", Name: "x"}, ActionAllow},
		{"exec reviewed", dev, KubeRequest{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "default", Name: "p"}, ActionReview},
		{"any pod subresource in kube-system blocked", dev, KubeRequest{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "kube-system", Name: "p"}, ActionBlock},
		{"pods themselves not covered by pods/*", dev, KubeRequest{Verb: "get", Resource: "pods", Namespace: "kube-system"}, ActionAllow},
		{"api group restricts", dev, KubeRequest{Verb: "patch", APIGroup: "apps", Resource: "deployments", Name: "d"}, ActionReview},
		{"other group not matched", dev, KubeRequest{Verb: "patch", APIGroup: "example.com", Resource: "deployments", Name: "d"}, ActionAllow},
		{"role of another target ignored", sre, KubeRequest{Verb: "get", Resource: "pods", Name: "p"}, ActionAllow},
		{"non-resource request never matched", sre, KubeRequest{Verb: "get"}, ActionAllow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.KubeRules(tt.id, prod).Decide(tt.r)
			if d.Action != tt.want {
				t.Fatalf("Decide(%+v) = %v (%s), want %v", tt.r, d.Action, d.Reason, tt.want)
			}
			if d.Action != ActionAllow && d.Reason == "" {
				t.Fatal("decision without a reason")
			}
		})
	}
	if got := p.KubeRules(sre, prod).MaskFields("secrets"); !slices.Equal(got, []string{"data", "stringData"}) {
		t.Errorf("MaskFields(secrets) = %v", got)
	}
	if got := p.KubeRules(sre, prod).MaskFields("ConfigMaps"); !slices.Equal(got, []string{"binaryData", "data"}) {
		t.Errorf("MaskFields(configmaps) for sre = %v", got)
	}
	if got := p.KubeRules(dev, prod).MaskFields("configmaps"); len(got) != 0 {
		t.Errorf("MaskFields(configmaps) for dev = %v, want none", got)
	}
}
