package kube

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// status is a Kubernetes metav1.Status, the shape kubectl reads errors in.
type status struct {
	Kind       string         `json:"kind"`
	APIVersion string         `json:"apiVersion"`
	Metadata   map[string]any `json:"metadata"`
	Status     string         `json:"status"`
	Message    string         `json:"message"`
	Reason     string         `json:"reason"`
	Code       int            `json:"code"`
}

// reasons by HTTP code, as kube-apiserver names them.
var reasons = map[int]string{
	http.StatusBadRequest:                  "BadRequest",
	http.StatusForbidden:                   "Forbidden",
	http.StatusRequestEntityTooLarge:       "RequestEntityTooLarge",
	http.StatusRequestHeaderFieldsTooLarge: "BadRequest",
	http.StatusBadGateway:                  "InternalError",
	http.StatusServiceUnavailable:          "ServiceUnavailable",
	http.StatusGatewayTimeout:              "Timeout",
}

// writeStatus answers with a Failure Status.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	reason, ok := reasons[code]
	if !ok {
		reason = "InternalError"
	}
	b, _ := json.Marshal(status{Kind: "Status", APIVersion: "v1", Metadata: map[string]any{}, Status: "Failure",
		Message: msg, Reason: reason, Code: code})
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
