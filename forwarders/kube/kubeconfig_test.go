package kube

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string
		Cluster map[string]string
	}
	Users []struct {
		Name string
		User map[string]string
	}
	Contexts []struct {
		Name    string
		Context map[string]string
	}
	Preferences map[string]any
}

func readKubeconfig(t *testing.T, path string) kubeconfig {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var k kubeconfig
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWriteKubeconfig(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	t.Run("new file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sub", "config")
		if err := WriteKubeconfig(path, "prod-k8s", 16443, ca); err != nil {
			t.Fatal(err)
		}
		k := readKubeconfig(t, path)
		if k.CurrentContext != "jumpgate-prod-k8s" || len(k.Clusters) != 1 || len(k.Users) != 1 || len(k.Contexts) != 1 {
			t.Fatalf("%+v", k)
		}
		if k.Clusters[0].Cluster["server"] != "https://127.0.0.1:16443" {
			t.Fatalf("server %q", k.Clusters[0].Cluster["server"])
		}
		if got, _ := base64.StdEncoding.DecodeString(k.Clusters[0].Cluster["certificate-authority-data"]); string(got) != string(ca) {
			t.Fatal("CA not inline")
		}
		if k.Users[0].User["token"] == "" {
			t.Fatal("no placeholder token")
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", st.Mode())
		}
	})
	t.Run("merge keeps other entries and replaces ours", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		old := `apiVersion: v1
kind: Config
current-context: kind-dev
preferences: {colors: true}
clusters:
- name: kind-dev
  cluster: {server: "https://127.0.0.1:6443"}
- name: jumpgate-prod-k8s
  cluster: {server: "https://127.0.0.1:1111"}
users:
- name: kind-dev
  user: {token: secret}
contexts:
- name: kind-dev
  context: {cluster: kind-dev, user: kind-dev}
`
		if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := WriteKubeconfig(path, "prod-k8s", 17000, ca); err != nil {
			t.Fatal(err)
		}
		if err := WriteKubeconfig(path, "stage-k8s", 17001, ca); err != nil {
			t.Fatal(err)
		}
		k := readKubeconfig(t, path)
		if k.CurrentContext != "kind-dev" || k.Preferences["colors"] != true {
			t.Fatalf("other settings lost: %+v", k)
		}
		if len(k.Clusters) != 3 || len(k.Users) != 3 || len(k.Contexts) != 3 {
			t.Fatalf("entries: %+v", k)
		}
		if k.Clusters[0].Name != "kind-dev" || k.Users[0].User["token"] != "secret" {
			t.Fatalf("existing entry changed: %+v", k)
		}
		if k.Clusters[1].Name != "jumpgate-prod-k8s" || k.Clusters[1].Cluster["server"] != "https://127.0.0.1:17000" {
			t.Fatalf("our entry not replaced: %+v", k.Clusters[1])
		}
	})
	t.Run("not a kubeconfig", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		os.WriteFile(path, []byte("clusters: 5\n"), 0o600)
		if err := WriteKubeconfig(path, "prod-k8s", 16443, ca); err == nil {
			t.Fatal("merged into a file whose clusters is not a list")
		}
	})
}

func TestKubeconfigPath(t *testing.T) {
	for _, tt := range []struct{ file, env, want string }{
		{"/x/f", "/a:/b", "/x/f"},
		{"", "/a:/b", "/a"},
		{"", "", "/home/u/.kube/config"},
	} {
		if got := KubeconfigPath(tt.file, tt.env, "/home/u"); got != tt.want {
			t.Errorf("KubeconfigPath(%q, %q) = %q, want %q", tt.file, tt.env, got, tt.want)
		}
	}
}
