package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/storage"
)

func (a *API) registerRequests(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/requests", a.authed(a.handleRequests))
	mux.HandleFunc("POST /v1/requests", a.authed(a.handleCreateRequest))
	mux.HandleFunc("POST /v1/requests/{id}/approve", a.authed(a.handleDecide(true)))
	mux.HandleFunc("POST /v1/requests/{id}/deny", a.authed(a.handleDecide(false)))
}

func (a *API) handleRequests(w http.ResponseWriter, r *http.Request, c Caller, _ []byte) {
	list, err := a.Approvals.List(r.Context())
	if err != nil {
		writeError(w, classify(err))
		return
	}
	pol := a.Policy.Current()
	all := c.Local || pol.IsApprover(c.PolicyIdentity()) || pol.IsAuditor(c.PolicyIdentity())
	out := []storage.Request{}
	for _, q := range list {
		if all || q.User == c.Username {
			out = append(out, q)
		}
	}
	writeJSON(w, 200, out)
}

type createRequest struct {
	Target   string `json:"target"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
}

func (a *API) handleCreateRequest(w http.ResponseWriter, r *http.Request, c Caller, body []byte) {
	var req createRequest
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, apiErr(http.StatusBadRequest, "body must be {\"target\", \"duration\", \"reason\"}", err))
		return
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil || d <= 0 {
		writeError(w, apiErr(http.StatusBadRequest, "duration must be a positive duration such as 1h", err))
		return
	}
	if req.Reason == "" {
		writeError(w, apiErr(http.StatusBadRequest, "a reason is required", nil))
		return
	}
	found := false
	if a.Targets != nil {
		for _, t := range a.Targets() {
			found = found || t.Name == req.Target
		}
	}
	if !found {
		writeError(w, apiErr(http.StatusBadRequest, "unknown target "+req.Target, nil))
		return
	}
	created, err := a.Approvals.Create(r.Context(), storage.Request{Kind: storage.KindAccess, User: c.Username, Groups: c.Groups,
		Target: req.Target, What: "access to " + req.Target + " for " + d.String(), Reason: req.Reason, Duration: d}, 24*time.Hour)
	if err != nil {
		if errors.Is(err, approvals.ErrTooLong) {
			writeError(w, apiErr(http.StatusBadRequest, err.Error(), err))
			return
		}
		writeError(w, classify(err))
		return
	}
	writeJSON(w, http.StatusCreated, created)
}

type decideRequest struct {
	Reason string `json:"reason"`
}

func (a *API) handleDecide(approve bool) func(http.ResponseWriter, *http.Request, Caller, []byte) {
	return func(w http.ResponseWriter, r *http.Request, c Caller, body []byte) {
		var req decideRequest
		if len(body) > 0 {
			if err := decodeStrict(body, &req); err != nil {
				writeError(w, apiErr(http.StatusBadRequest, "body must be {\"reason\": ...}", err))
				return
			}
		}
		if !approve && req.Reason == "" {
			writeError(w, apiErr(http.StatusBadRequest, "a reason is required to deny", nil))
			return
		}
		got, err := a.Approvals.Decide(r.Context(), r.PathValue("id"), c.PolicyIdentity(), approve, req.Reason)
		switch {
		case err == nil:
			writeJSON(w, 200, got)
		case errors.Is(err, approvals.ErrOwnRequest):
			writeError(w, apiErr(http.StatusForbidden, "nobody approves their own request", err))
		case errors.Is(err, approvals.ErrNotApprover):
			writeError(w, apiErr(http.StatusForbidden, "you are not an approver (policy requests.approvers)", err))
		case errors.Is(err, approvals.ErrDecided):
			writeError(w, apiErr(http.StatusConflict, err.Error(), err))
		default:
			writeError(w, classify(err))
		}
	}
}
