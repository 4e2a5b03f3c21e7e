package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestJSONAccept(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "application/json"},
		{"application/vnd.kubernetes.protobuf, application/json", "application/json,application/json"},
		{"application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
		{"application/cbor", "application/json"},
		{"application/yaml", "application/yaml"},
	} {
		if got := jsonAccept(tt.in); got != tt.want {
			t.Errorf("jsonAccept(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskBodyRefusesUnknown(t *testing.T) {
	m := newMasker([]string{"data"})
	for _, tt := range []struct{ mt, body string }{
		{"application/vnd.kubernetes.protobuf", "k8s\x00"},
		{"text/plain", "data: x"},
		{"application/json", `{"data":{"a":"b"}} {"data":{"a":"b"}}`},
		{"application/json", `{"data":`},
		{"application/yaml", "data: {a: b}\n---\ndata: {a: c}\n"},
	} {
		if _, err := m.body(tt.mt, []byte(tt.body)); !errors.Is(err, ErrCannotMask) {
			t.Errorf("body(%q, %q) err = %v, want ErrCannotMask", tt.mt, tt.body, err)
		}
	}
}

func TestMaskNestedPath(t *testing.T) {
	m := newMasker([]string{"spec.password", "data"})
	out, err := m.body("application/json", []byte(`{"spec":{"password":"p","user":"u"},"data":{"k":"not base64!"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"password":"********"`)) || !bytes.Contains(out, []byte(`"user":"u"`)) || !bytes.Contains(out, []byte(`"k":"********"`)) {
		t.Fatalf("masked %s", out)
	}
}

// FuzzMask checks that masking a JSON body or watch stream never panics
// and that what it lets through has no unmasked data value.
func FuzzMask(f *testing.F) {
	f.Add([]byte(secretJSON))
	f.Add([]byte(`{"kind":"SecretList","items":[` + secretJSON + `]}`))
	f.Add([]byte(`{"kind":"Table","rows":[{"object":` + secretJSON + `}]}`))
	f.Add([]byte(`{"type":"ADDED","object":` + secretJSON + "}\n"))
	f.Add([]byte(`{"data":"scalar"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m := newMasker([]string{"data", "stringData"})
		check := func(out []byte) {
			var v any
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("masked output is not JSON: %v", err)
			}
			var walk func(any, bool)
			walk = func(v any, top bool) {
				obj, ok := v.(map[string]any)
				if !ok {
					return
				}
				if top {
					for _, f := range []string{"data", "stringData"} {
						switch d := obj[f].(type) {
						case map[string]any:
							for _, val := range d {
								if val != maskText && val != maskB64 {
									t.Fatalf("unmasked %s value %v", f, val)
								}
							}
						case nil:
						default:
							if d != maskText && d != maskB64 {
								t.Fatalf("unmasked %s %v", f, d)
							}
						}
					}
				}
				if items, ok := obj["items"].([]any); ok {
					for _, it := range items {
						walk(it, true)
					}
				}
			}
			walk(v, true)
		}
		if out, err := m.body("application/json", body); err == nil {
			check(out)
		}
		var buf bytes.Buffer
		if err := m.watch(&buf, bytes.NewReader(body), func() {}); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if line == "" {
					continue
				}
				var ev map[string]any
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("event not JSON: %v", err)
				}
				if o, ok := ev["object"]; ok {
					b, _ := json.Marshal(o)
					check(b)
				}
			}
		}
	})
}
