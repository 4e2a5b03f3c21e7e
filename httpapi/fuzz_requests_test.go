package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jumpgate/jumpgate/config"
)

// FuzzRequestBodies feeds arbitrary bodies to the just-in-time request
// endpoints (create, approve, deny) as an authenticated caller: the answer
// is a JSON object with a 2xx or 4xx status, never a panic or a 5xx, and
// nothing is created from a body the endpoint refused.
func FuzzRequestBodies(f *testing.F) {
	e := newAPIEnv(f)
	e.api.Targets = func() []config.Target { return []config.Target{{Name: "db", Kind: config.KindPostgres}} }
	caller := Caller{Username: "alice", Groups: []string{"readers"}, Roles: []string{"readers"}}
	f.Add(uint8(0), []byte(`{"target":"db","duration":"1h","reason":"incident 42"}`), "")
	f.Add(uint8(0), []byte(`{"target":"db","duration":"-1h","reason":"x"}`), "")
	f.Add(uint8(1), []byte(`{"reason":"ok"}`), "r-1")
	f.Add(uint8(2), []byte(`{"reason":""}`), "../../x")
	f.Fuzz(func(t *testing.T, which uint8, body []byte, id string) {
		rec := httptest.NewRecorder()
		switch which % 3 {
		case 0:
			req := httptest.NewRequest("POST", "/v1/requests", strings.NewReader(string(body)))
			e.api.handleCreateRequest(rec, req, caller, body)
		default:
			req := httptest.NewRequest("POST", "/v1/requests/x/approve", strings.NewReader(string(body)))
			req.SetPathValue("id", id)
			e.api.handleDecide(which%3 == 1)(rec, req, caller, body)
		}
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
		var res map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("non-JSON answer %q", rec.Body)
		}
		if rec.Code >= 400 {
			if _, ok := res["error"]; !ok {
				t.Fatalf("error answer without an error field: %s", rec.Body)
			}
		}
	})
}
