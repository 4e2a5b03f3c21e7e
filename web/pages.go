package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jumpgate/jumpgate/approvals"
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/httpapi"
	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
)

// --- sessions ---

type sessionFilter struct{ User, Target, Status, Since string }

type sessionRow struct {
	storage.Session
	Duration time.Duration
	Live     bool
}

type sessionsData struct {
	Filter   sessionFilter
	Sessions []sessionRow
	Statuses []string
	AllUsers bool
}

func (c *Console) handleSessions(w http.ResponseWriter, r *http.Request, u *user) {
	q := r.URL.Query()
	f := sessionFilter{User: q.Get("user"), Target: q.Get("target"), Status: q.Get("status"), Since: q.Get("since")}
	sf := storage.SessionFilter{User: f.User, Target: f.Target, Status: f.Status}
	if f.Since != "" {
		t, err := httpapi.ParseSince(f.Since, c.now())
		if err != nil {
			c.errorPage(w, r, u, http.StatusBadRequest, err.Error())
			return
		}
		sf.Since = t
	}
	api := c.cfg.API
	auditor := api.IsAuditor(u.caller()) || api.Policy.Current().IsApprover(u.caller().PolicyIdentity())
	if !auditor {
		if sf.User != "" && sf.User != u.Username {
			c.errorPage(w, r, u, http.StatusForbidden, "Only auditors see other users' sessions.")
			return
		}
		sf.User = u.Username
	}
	list, err := api.Store.Sessions(r.Context(), sf)
	if err != nil {
		c.log.Error("list sessions", "err", err)
		c.errorPage(w, r, u, http.StatusInternalServerError, "The session index cannot be read.")
		return
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Start.After(list[j].Start) })
	rows := make([]sessionRow, 0, len(list))
	now := c.now()
	for _, s := range list {
		if !api.CanSee(u.caller(), s) {
			continue
		}
		row := sessionRow{Session: s, Live: s.Status == storage.SessionRunning}
		switch {
		case !s.End.IsZero():
			row.Duration = s.End.Sub(s.Start)
		case row.Live:
			row.Duration = now.Sub(s.Start)
		}
		rows = append(rows, row)
	}
	c.render(w, r, u, http.StatusOK, "sessions", sessionsData{Filter: f, Sessions: rows, AllUsers: auditor,
		Statuses: []string{storage.SessionRunning, storage.SessionEnded, storage.SessionInterrupted}})
}

// visibleSession loads the session of the {id} path value if u may see
// it. A session u may not see answers exactly like one that does not
// exist, so its existence does not leak.
func (c *Console) visibleSession(r *http.Request, u *user) (storage.Session, int) {
	id := r.PathValue("id")
	s, err := c.cfg.API.Store.Session(r.Context(), id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return s, http.StatusNotFound
		}
		c.log.Error("read session", "session", id, "err", err)
		return s, http.StatusInternalServerError
	}
	if !c.cfg.API.CanSee(u.caller(), s) {
		c.log.Info("session hidden from user", "session", id, "user", u.Username)
		return s, http.StatusNotFound
	}
	return s, http.StatusOK
}

type sessionEvent struct {
	audit.Event
	Details []kv
	Offset  float64
	HasAt   bool
}

type sessionData struct {
	Session      sessionRow
	HasRecording bool
	StartAt      float64
	// MarkersJSON is [[seconds, label], ...] for the player's timeline;
	// html/template escapes it as an attribute value.
	MarkersJSON  string
	Events       []sessionEvent
	CanTerminate bool
}

func (c *Console) handleSession(w http.ResponseWriter, r *http.Request, u *user) {
	s, status := c.visibleSession(r, u)
	if status != http.StatusOK {
		c.errorPage(w, r, u, status, "There is no such session, or it is not yours to see.")
		return
	}
	d := sessionData{Session: sessionRow{Session: s, Live: s.Status == storage.SessionRunning}}
	if !s.End.IsZero() {
		d.Session.Duration = s.End.Sub(s.Start)
	} else if d.Session.Live {
		d.Session.Duration = c.now().Sub(s.Start)
	}
	if rd, err := c.cfg.API.OpenRecording(r.Context(), s); err == nil {
		rd.Close()
		d.HasRecording = true
	}
	if t := r.URL.Query().Get("t"); t != "" {
		if f, err := strconv.ParseFloat(t, 64); err == nil && f >= 0 && f < 1e9 {
			d.StartAt = f
		}
	}
	{
		events, _, err := audit.List(r.Context(), c.cfg.API.Store, audit.Filter{Session: s.ID})
		if err != nil {
			c.log.Error("audit events of session", "session", s.ID, "err", err)
		}
		markers := [][2]any{}
		for _, e := range events {
			se := sessionEvent{Event: e, Details: detailText(e.Details)}
			se.Offset, se.HasAt = offsetOf(e.Details)
			if se.HasAt && e.Type == audit.CommandBlocked {
				markers = append(markers, [2]any{se.Offset, "blocked: " + valueText(e.Details["command"])})
			}
			d.Events = append(d.Events, se)
		}
		b, _ := json.Marshal(markers)
		d.MarkersJSON = string(b)
	}
	d.CanTerminate = d.Session.Live && c.cfg.Terminate != nil && c.mayTerminate(u)
	c.render(w, r, u, http.StatusOK, "session", d)
}

func (c *Console) mayTerminate(u *user) bool {
	api := c.cfg.API
	return api.IsAuditor(u.caller()) || api.IsAdmin(u.caller()) || api.Policy.Current().IsApprover(u.caller().PolicyIdentity())
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// handleRecording serves the recording as asciicast data for the player.
// It is data, never a document: a strict sandboxing CSP, nosniff and
// attachment disposition keep a browser from rendering it.
func (c *Console) handleRecording(w http.ResponseWriter, r *http.Request, u *user) {
	s, status := c.visibleSession(r, u)
	if status != http.StatusOK {
		http.Error(w, "no such session", status)
		return
	}
	rd, err := c.cfg.API.OpenRecording(r.Context(), s)
	if err != nil {
		if !errors.Is(err, recordings.ErrNotFound) {
			c.log.Error("open recording", "session", s.ID, "err", err)
		}
		http.Error(w, "this session has no recording", http.StatusNotFound)
		return
	}
	defer rd.Close()
	h := w.Header()
	h.Set("Content-Type", "application/x-asciicast")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", recordingCSP)
	h.Set("Content-Disposition", `attachment; filename="`+unsafeFileChars.ReplaceAllString(s.ID, "_")+`.cast"`)
	h.Set("Cache-Control", "no-store")
	if err := recorder.ExportReader(w, rd); err != nil {
		// Headers are gone; the player gets the valid prefix.
		c.log.Error("export recording", "session", s.ID, "err", err)
	}
}

func (c *Console) handleTerminate(w http.ResponseWriter, r *http.Request, u *user) {
	s, status := c.visibleSession(r, u)
	if status != http.StatusOK {
		c.errorPage(w, r, u, status, "There is no such session, or it is not yours to see.")
		return
	}
	if c.cfg.Terminate == nil || !c.mayTerminate(u) {
		c.errorPage(w, r, u, http.StatusForbidden, "Only auditors, approvers and admins end sessions.")
		return
	}
	if err := c.cfg.Terminate(r.Context(), s.ID, u.Username); err != nil {
		c.log.Error("terminate session", "session", s.ID, "by", u.Username, "err", err)
		c.errorPage(w, r, u, http.StatusBadGateway, "The session could not be ended: it may have ended already or runs on another replica.")
		return
	}
	c.log.Info("session terminated from console", "session", s.ID, "by", u.Username)
	http.Redirect(w, r, "/sessions/"+s.ID, http.StatusSeeOther)
}

// --- audit ---

type auditFilter struct{ Type, User, Since, Session string }

type auditRow struct {
	audit.Event
	Details []kv
	JumpURL string
}

type auditData struct {
	Filter    auditFilter
	Rows      []auditRow
	Total     int
	Truncated bool
	Types     []string
	// Verified is shown to auditors: the hash chain check of the whole log.
	ShowVerify  bool
	VerifyOK    bool
	VerifyCount int
	VerifyError string
}

var eventTypes = []string{
	audit.CertIssued, audit.CertRevoked, audit.HostCertIssued, audit.AuthFailed, audit.SessionStart, audit.SessionEnd,
	audit.Exec, audit.CommandBlocked, audit.CommandHeld, audit.ForwardEnd, audit.SQLQuery, audit.SQLBlocked, audit.SQLHeld,
	audit.KubeRequest, audit.KubeBlocked, audit.RequestCreated, audit.RequestApproved, audit.RequestDenied,
	audit.RequestExpired, audit.PolicyReloaded, audit.PolicyRejected, audit.ServerStarted,
}

func (c *Console) handleAudit(w http.ResponseWriter, r *http.Request, u *user) {
	q := r.URL.Query()
	f := auditFilter{Type: q.Get("type"), User: q.Get("user"), Since: q.Get("since"), Session: q.Get("session")}
	af := audit.Filter{Type: f.Type, User: f.User, Session: f.Session}
	if f.Since != "" {
		t, err := httpapi.ParseSince(f.Since, c.now())
		if err != nil {
			c.errorPage(w, r, u, http.StatusBadRequest, err.Error())
			return
		}
		af.Since = t
	}
	auditor := c.cfg.API.IsAuditor(u.caller())
	if !auditor {
		if af.User != "" && af.User != u.Username {
			c.errorPage(w, r, u, http.StatusForbidden, "Only auditors see other users' events.")
			return
		}
		af.User = u.Username
	}
	events, _, err := audit.List(r.Context(), c.cfg.API.Store, af)
	if err != nil {
		c.log.Error("list audit", "err", err)
		c.errorPage(w, r, u, http.StatusInternalServerError, "The audit log cannot be read.")
		return
	}
	d := auditData{Filter: f, Total: len(events), Types: eventTypes, ShowVerify: auditor}
	slices.Reverse(events)
	if len(events) > maxAuditRows {
		events, d.Truncated = events[:maxAuditRows], true
	}
	for _, e := range events {
		row := auditRow{Event: e, Details: detailText(e.Details)}
		if off, ok := offsetOf(e.Details); ok && e.Session != "" {
			row.JumpURL = "/sessions/" + e.Session + "?t=" + formatSeconds(off)
		}
		d.Rows = append(d.Rows, row)
	}
	if auditor {
		n, err := audit.Verify(r.Context(), c.cfg.API.Store)
		d.VerifyOK, d.VerifyCount = err == nil, n
		if err != nil {
			d.VerifyError = err.Error()
		}
	}
	c.render(w, r, u, http.StatusOK, "audit", d)
}

// --- requests ---

type requestRow struct {
	storage.Request
	Own       bool
	CanDecide bool
}

type requestsData struct {
	Status   string
	Statuses []string
	Rows     []requestRow
	Counts   map[string]int
	All      bool
	Decided  string
}

func (c *Console) handleRequests(w http.ResponseWriter, r *http.Request, u *user) {
	q := c.cfg.API.Approvals
	if q == nil {
		c.errorPage(w, r, u, http.StatusNotFound, "Access requests are not enabled on this server.")
		return
	}
	status := r.URL.Query().Get("status")
	statuses := []string{storage.StatusPending, storage.StatusApproved, storage.StatusDenied, storage.StatusExpired}
	if status == "" {
		status = storage.StatusPending
	}
	if status != "all" && !slices.Contains(statuses, status) {
		c.errorPage(w, r, u, http.StatusBadRequest, "Unknown status; use pending, approved, denied, expired or all.")
		return
	}
	list, err := q.List(r.Context())
	if err != nil {
		c.log.Error("list requests", "err", err)
		c.errorPage(w, r, u, http.StatusInternalServerError, "The request queue cannot be read.")
		return
	}
	id := u.caller().PolicyIdentity()
	pol := c.cfg.API.Policy.Current()
	approver := pol.IsApprover(id)
	all := approver || pol.IsAuditor(id)
	d := requestsData{Status: status, Statuses: statuses, All: all, Counts: map[string]int{}}
	sort.SliceStable(list, func(i, j int) bool { return list[i].CreatedAt.After(list[j].CreatedAt) })
	for _, rq := range list {
		if !all && rq.User != u.Username {
			continue
		}
		d.Counts[rq.Status]++
		if status != "all" && rq.Status != status {
			continue
		}
		own := rq.User == u.Username
		d.Rows = append(d.Rows, requestRow{Request: rq, Own: own, CanDecide: approver && !own && rq.Status == storage.StatusPending})
	}
	if dec := r.URL.Query().Get("decided"); dec != "" {
		d.Decided = dec
	}
	c.render(w, r, u, http.StatusOK, "requests", d)
}

func (c *Console) handleDecide(w http.ResponseWriter, r *http.Request, u *user) {
	q := c.cfg.API.Approvals
	if q == nil {
		c.errorPage(w, r, u, http.StatusNotFound, "Access requests are not enabled on this server.")
		return
	}
	var approve bool
	switch r.PostFormValue("action") {
	case "approve":
		approve = true
	case "deny":
	default:
		c.errorPage(w, r, u, http.StatusBadRequest, "Choose approve or deny.")
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		c.errorPage(w, r, u, http.StatusBadRequest, "A reason is required to approve or deny.")
		return
	}
	if len(reason) > 1000 {
		c.errorPage(w, r, u, http.StatusBadRequest, "The reason is too long (at most 1000 characters).")
		return
	}
	got, err := q.Decide(r.Context(), r.PathValue("id"), u.caller().PolicyIdentity(), approve, reason)
	switch {
	case err == nil:
		c.log.Info("request decided in console", "request", got.ID, "by", u.Username, "status", got.Status)
		http.Redirect(w, r, "/requests?status="+got.Status+"&decided="+queryEscape(got.ID), http.StatusSeeOther)
	case errors.Is(err, approvals.ErrOwnRequest):
		c.errorPage(w, r, u, http.StatusForbidden, "Nobody approves or denies their own request; another approver must decide.")
	case errors.Is(err, approvals.ErrNotApprover):
		c.errorPage(w, r, u, http.StatusForbidden, "You are not an approver (policy requests.approvers).")
	case errors.Is(err, approvals.ErrDecided):
		c.errorPage(w, r, u, http.StatusConflict, "This request was already decided or has expired.")
	case errors.Is(err, storage.ErrNotFound):
		c.errorPage(w, r, u, http.StatusNotFound, "There is no such request.")
	default:
		c.log.Error("decide request", "err", err)
		c.errorPage(w, r, u, http.StatusInternalServerError, "The decision could not be recorded.")
	}
}
