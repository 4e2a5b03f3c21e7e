package kube

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jumpgate/jumpgate/atomicfile"
	"gopkg.in/yaml.v3"
)

// DefaultLocalPort is the local port of `ssh -L` in generated kubeconfigs.
const DefaultLocalPort = 16443

// PlaceholderToken is the bearer token written into kubeconfig user
// entries: the forwarder strips it, but without a credential kubectl
// prompts for a password.
const PlaceholderToken = "jumpgate-ignores-this-token"

// ContextName is the kubeconfig cluster, user and context name for target.
func ContextName(target string) string { return "jumpgate-" + target }

// KubeconfigPath returns where kube-config writes: file if set, else the
// first entry of kubeconfigEnv ($KUBECONFIG), else home/.kube/config.
func KubeconfigPath(file, kubeconfigEnv, home string) string {
	if file != "" {
		return file
	}
	for _, p := range filepath.SplitList(kubeconfigEnv) {
		if p != "" {
			return p
		}
	}
	return filepath.Join(home, ".kube", "config")
}

// SSHCommand is the tunnel to keep open for the kubeconfig of target.
func SSHCommand(target string, port int, bastion string) string {
	return fmt.Sprintf("ssh -L %d:%s:443 -N %s", port, target, bastion)
}

// WriteKubeconfig writes, or merges into the kubeconfig at path keeping
// every other entry, a cluster, user and context named jumpgate-TARGET
// with server https://127.0.0.1:PORT, caPEM inline and a placeholder
// token. It sets current-context only when the file has none.
func WriteKubeconfig(path, target string, port int, caPEM []byte) error {
	if target == "" || port <= 0 || port > 65535 || len(caPEM) == 0 {
		return errors.New("kube: kubeconfig needs a target, a port and the CA")
	}
	var doc yaml.Node
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("kube: read kubeconfig: %w", err)
	case len(bytes.TrimSpace(old)) > 0:
		if err := yaml.Unmarshal(old, &doc); err != nil {
			return fmt.Errorf("kube: kubeconfig %s is not YAML: %w", path, err)
		}
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("kube: kubeconfig %s is not a mapping", path)
	}
	name := ContextName(target)
	setDefault(root, "apiVersion", "v1")
	setDefault(root, "kind", "Config")
	entries := []struct {
		list, key string
		body      map[string]string
	}{
		{"clusters", "cluster", map[string]string{
			"server":                     "https://127.0.0.1:" + strconv.Itoa(port),
			"certificate-authority-data": base64.StdEncoding.EncodeToString(caPEM),
		}},
		{"users", "user", map[string]string{"token": PlaceholderToken}},
		{"contexts", "context", map[string]string{"cluster": name, "user": name}},
	}
	for _, e := range entries {
		seq := mapValue(root, e.list)
		if seq == nil || seq.Kind != yaml.SequenceNode {
			if seq != nil && !(seq.Kind == yaml.ScalarNode && (seq.Tag == "!!null" || seq.Value == "")) {
				return fmt.Errorf("kube: kubeconfig %s: %s is not a list", path, e.list)
			}
			seq = &yaml.Node{Kind: yaml.SequenceNode}
			setValue(root, e.list, seq)
		}
		item := entryNode(name, e.key, e.body)
		replaced := false
		for i, it := range seq.Content {
			if n := mapValue(it, "name"); n != nil && n.Value == name {
				seq.Content[i] = item
				replaced = true
			}
		}
		if !replaced {
			seq.Content = append(seq.Content, item)
		}
	}
	if cc := mapValue(root, "current-context"); cc == nil || cc.Value == "" {
		setValue(root, "current-context", scalar(name))
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("kube: encode kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	if err := atomicfile.Write(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("kube: write kubeconfig: %w", err)
	}
	return nil
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func setValue(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, scalar(key), v)
}

func setDefault(m *yaml.Node, key, v string) {
	if n := mapValue(m, key); n == nil || strings.TrimSpace(n.Value) == "" {
		setValue(m, key, scalar(v))
	}
}

func entryNode(name, key string, body map[string]string) *yaml.Node {
	inner := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range []string{"server", "certificate-authority-data", "cluster", "user", "token"} {
		if v, ok := body[k]; ok {
			inner.Content = append(inner.Content, scalar(k), scalar(v))
		}
	}
	return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{scalar("name"), scalar(name), scalar(key), inner}}
}
