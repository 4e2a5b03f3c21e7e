package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/recordings"
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

// recordings returns the recording store.
func (a *API) recordings() recordings.Store {
	if a.Recordings != nil {
		return a.Recordings
	}
	return recordings.Dir{Path: a.RecordingsDir}
}

// OpenRecording opens what is stored of a session's recording: all of it
// once the session ended, the prefix written so far while it runs (on any
// replica). It wraps recordings.ErrNotFound when there is none.
func (a *API) OpenRecording(ctx context.Context, s storage.Session) (*recorder.Reader, error) {
	if s.Recording == "" {
		return nil, fmt.Errorf("httpapi: session %s: %w", s.ID, recordings.ErrNotFound)
	}
	return a.recordings().Open(ctx, s.Recording)
}

func (a *API) handleRecording(w http.ResponseWriter, r *http.Request, c Caller, _ []byte) {
	s, ok := a.session(w, r, c)
	if !ok {
		return
	}
	rd, err := a.OpenRecording(r.Context(), s)
	if errors.Is(err, recordings.ErrNotFound) {
		writeError(w, apiErr(http.StatusNotFound, "this session has no recording", err))
		return
	}
	if err != nil {
		writeError(w, classify(err))
		return
	}
	defer rd.Close()
	w.Header().Set("Content-Type", "application/x-asciicast")
	if err := recorder.ExportReader(w, rd); err != nil {
		a.Logger.Error("export recording", "session", s.ID, "err", err)
	}
}
