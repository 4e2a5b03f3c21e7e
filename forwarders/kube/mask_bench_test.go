package kube

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkMaskSecretList masks a list of 1,000 Secrets (3 data keys
// each), as the forwarder does for `kubectl get secrets -o json`, and
// reports time and memory per list.
func BenchmarkMaskSecretList(b *testing.B) {
	items := make([]map[string]any, 1000)
	for i := range items {
		items[i] = map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": fmt.Sprintf("s-%d", i), "namespace": "default"},
			"data": map[string]any{
				"password": base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("hunter2-%d", i))),
				"user":     base64.StdEncoding.EncodeToString([]byte("admin")),
				"token":    base64.StdEncoding.EncodeToString(make([]byte, 512)),
			},
		}
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "SecretList", "items": items})
	if err != nil {
		b.Fatal(err)
	}
	m := newMasker([]string{"data", "stringData"})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.body("application/json", body); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(len(body))/1e6, "MB-list")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/1e6, "MB-alloc/list")
}
