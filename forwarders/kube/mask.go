package kube

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrCannotMask is wrapped when a response carrying a masked resource is
// in a form the forwarder cannot rewrite; such a response is refused.
var ErrCannotMask = errors.New("kube: response cannot be masked")

// maskText replaces masked values; maskB64 replaces values that were
// base64 (Secret data), so they stay valid base64.
const maskText = "********"

var maskB64 = base64.StdEncoding.EncodeToString([]byte(maskText))

// masker masks fields of objects of one resource.
type masker struct {
	fields [][]string // dotted paths split
}

func newMasker(fields []string) *masker {
	m := &masker{}
	for _, f := range fields {
		m.fields = append(m.fields, strings.Split(f, "."))
	}
	return m
}

// value masks v, which is an object, a list, a Table or a List of them.
func (m *masker) value(v any) {
	obj, ok := v.(map[string]any)
	if !ok {
		return
	}
	for _, path := range m.fields {
		maskPath(obj, path)
	}
	if items, ok := obj["items"].([]any); ok {
		for _, it := range items {
			m.value(it)
		}
	}
	if rows, ok := obj["rows"].([]any); ok {
		for _, r := range rows {
			if row, ok := r.(map[string]any); ok {
				m.value(row["object"])
			}
		}
	}
}

// event masks one watch event ({"type": ..., "object": ...}).
func (m *masker) event(v any) {
	if ev, ok := v.(map[string]any); ok {
		m.value(ev["object"])
	}
}

func maskPath(obj map[string]any, path []string) {
	cur := obj
	for i, key := range path {
		v, ok := cur[key]
		if !ok || v == nil {
			return
		}
		if i < len(path)-1 {
			next, ok := v.(map[string]any)
			if !ok {
				cur[key] = maskText
				return
			}
			cur = next
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				x[k] = maskScalar(val)
			}
		default:
			cur[key] = maskScalar(x)
		}
	}
}

func maskScalar(v any) any {
	if s, ok := v.(string); ok && s != "" {
		if _, err := base64.StdEncoding.DecodeString(s); err == nil {
			return maskB64
		}
	}
	return maskText
}

// mediaType returns the media type of a Content-Type header and whether
// it is a watch stream.
func mediaType(ct string) (string, bool) {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", false
	}
	return mt, params["stream"] == "watch"
}

// maskBody masks a complete (non-watch) response body of media type mt.
func (m *masker) body(mt string, body []byte) ([]byte, error) {
	switch mt {
	case "application/json":
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: json: %w", ErrCannotMask, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: trailing data after JSON", ErrCannotMask)
		}
		if _, ok := v.(map[string]any); !ok {
			return nil, fmt.Errorf("%w: body is not an object", ErrCannotMask)
		}
		m.value(v)
		return json.Marshal(v)
	case "application/yaml":
		var v any
		dec := yaml.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: yaml: %w", ErrCannotMask, err)
		}
		var extra any
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: more than one YAML document", ErrCannotMask)
		}
		if _, ok := v.(map[string]any); !ok {
			return nil, fmt.Errorf("%w: body is not an object", ErrCannotMask)
		}
		m.value(v)
		return yaml.Marshal(v)
	}
	return nil, fmt.Errorf("%w: media type %q", ErrCannotMask, mt)
}

// watch copies a JSON watch stream from src to dst, masking each event's
// object; flush is called after each event.
func (m *masker) watch(dst io.Writer, src io.Reader, flush func()) error {
	dec := json.NewDecoder(src)
	dec.UseNumber()
	for {
		var ev any
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%w: watch event: %w", ErrCannotMask, err)
		}
		if _, ok := ev.(map[string]any); !ok {
			return fmt.Errorf("%w: watch event is not an object", ErrCannotMask)
		}
		m.event(ev)
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCannotMask, err)
		}
		if _, err := dst.Write(append(b, '\n')); err != nil {
			return err
		}
		flush()
	}
}

// decoded returns body decompressed per Content-Encoding.
func decoded(encoding string, body io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrCannotMask, err)
		}
		return zr, nil
	}
	return nil, fmt.Errorf("%w: content encoding %q", ErrCannotMask, encoding)
}

// jsonAccept rewrites an Accept header so that the API server answers in
// JSON wherever the client asked for protobuf or CBOR, keeping the other
// parameters (as=Table, ...).
func jsonAccept(accept string) string {
	if accept == "" {
		return "application/json"
	}
	var out []string
	for _, part := range strings.Split(accept, ",") {
		p := strings.TrimSpace(part)
		mt, rest, _ := strings.Cut(p, ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "application/vnd.kubernetes.protobuf", "application/cbor", "application/vnd.kubernetes.protobuf;stream=watch":
			mt = "application/json"
		}
		if rest != "" {
			out = append(out, mt+";"+rest)
		} else {
			out = append(out, mt)
		}
	}
	return strings.Join(out, ",")
}
