package httpapi

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/storage"
)

func (a *API) registerSessions(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/sessions", a.authed(a.handleSessions))
	mux.HandleFunc("GET /v1/sessions/{id}", a.authed(a.handleSession))
	mux.HandleFunc("GET /v1/sessions/{id}/recording", a.authed(a.handleRecording))
}

// CanSee reports whether c may see s: auditors see all sessions,
// approvers also see running ones (so they can end them), everyone sees
// their own.
func (a *API) CanSee(c Caller, s storage.Session) bool {
	return a.IsAuditor(c) || s.User == c.Username ||
		(s.Status == storage.SessionRunning && a.Policy.Current().IsApprover(c.PolicyIdentity()))
}

func (a *API) handleSessions(w http.ResponseWriter, r *http.Request, c Caller, _ []byte) {
	q := r.URL.Query()
	f := storage.SessionFilter{User: q.Get("user"), Target: q.Get("target"), Status: q.Get("status")}
	if s := q.Get("since"); s != "" {
		t, err := ParseSince(s, a.now())
		if err != nil {
			writeError(w, apiErr(http.StatusBadRequest, err.Error(), err))
			return
		}
		f.Since = t
	}
	approver := a.Policy.Current().IsApprover(c.PolicyIdentity())
	if !a.IsAuditor(c) && !approver {
		if f.User != "" && f.User != c.Username {
			writeError(w, apiErr(http.StatusForbidden, "only auditors see other users' sessions", nil))
			return
		}
		f.User = c.Username
	}
	list, err := a.Store.Sessions(r.Context(), f)
	if err != nil {
		writeError(w, classify(err))
		return
	}
	out := []storage.Session{}
	for _, s := range list {
		if a.CanSee(c, s) {
			out = append(out, s)
		}
	}
	writeJSON(w, 200, out)
}

// session returns the session if c may see it; otherwise 404, so a
// session's existence does not leak.
func (a *API) session(w http.ResponseWriter, r *http.Request, c Caller) (storage.Session, bool) {
	id := r.PathValue("id")
	s, err := a.Store.Session(r.Context(), id)
	if err != nil || !a.CanSee(c, s) {
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			writeError(w, classify(err))
			return s, false
		}
		writeError(w, apiErr(http.StatusNotFound, "no such session", err))
		return s, false
	}
	return s, true
}

func (a *API) handleSession(w http.ResponseWriter, r *http.Request, c Caller, _ []byte) {
	if s, ok := a.session(w, r, c); ok {
		writeJSON(w, 200, s)
	}
}

// RecordingPath resolves a session's recording inside the recordings dir.
func (a *API) RecordingPath(s storage.Session) (string, bool) {
	if s.Recording == "" || a.RecordingsDir == "" {
		return "", false
	}
	p := filepath.Join(a.RecordingsDir, filepath.Clean("/"+s.Recording))
	if !strings.HasPrefix(p, filepath.Clean(a.RecordingsDir)+string(filepath.Separator)) {
		return "", false
	}
	return p, true
}

func (a *API) handleRecording(w http.ResponseWriter, r *http.Request, c Caller, _ []byte) {
	s, ok := a.session(w, r, c)
	if !ok {
		return
	}
	p, ok := a.RecordingPath(s)
	if !ok {
		writeError(w, apiErr(http.StatusNotFound, "this session has no recording", nil))
		return
	}
	w.Header().Set("Content-Type", "application/x-asciicast")
	if err := recorder.Export(w, p); err != nil {
		a.Logger.Error("export recording", "session", s.ID, "err", err)
	}
}
