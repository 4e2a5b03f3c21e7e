package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"
)

// pageNames are the templates under templates/, each rendered inside layout.html.
var pageNames = []string{"sessions", "session", "audit", "requests", "error", "signedout"}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return "—"
		}
		return d.Round(time.Second).String()
	},
	"bytes": func(n int64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"secs": func(f float64) string { return formatSeconds(f) },
}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}

// layout is what every page's frame needs.
type layout struct {
	Title    string
	Nav      string
	User     *user
	CSRF     string
	Auditor  bool
	Approver bool
	Data     any
}

// render writes page name for u (nil: signed out) with data.
func (c *Console) render(w http.ResponseWriter, r *http.Request, u *user, status int, name string, data any) {
	t, ok := c.pages[name]
	if !ok {
		panic("web: no page " + name)
	}
	l := layout{Nav: name, User: u, Data: data, Title: title(name)}
	if u != nil {
		l.CSRF = u.csrf
		l.Auditor = c.cfg.API.IsAuditor(u.caller())
		l.Approver = c.cfg.API.Policy.Current().IsApprover(u.caller().PolicyIdentity())
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, l); err != nil {
		c.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

func title(name string) string {
	switch name {
	case "signedout":
		return "Signed out"
	case "error":
		return "Error"
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

type errorData struct {
	Status  int
	Text    string
	Message string
}

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, u *user, status int, msg string) {
	c.render(w, r, u, status, "error", errorData{Status: status, Text: http.StatusText(status), Message: msg})
}

// kv is one detail of an audit event, as text.
type kv struct{ Key, Value string }

// detailText renders audit details as sorted key/value text. Values are
// plain strings; html/template escapes them on output.
func detailText(d map[string]any) []kv {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]kv, 0, len(keys))
	for _, k := range keys {
		out = append(out, kv{Key: k, Value: valueText(d[k])})
	}
	return out
}

func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// offsetOf reads details.offset (seconds since session start).
func offsetOf(d map[string]any) (float64, bool) {
	var f float64
	switch x := d["offset"].(type) {
	case json.Number:
		v, err := x.Float64()
		if err != nil {
			return 0, false
		}
		f = v
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	default:
		return 0, false
	}
	if f < 0 || f != f || f > 1e9 {
		return 0, false
	}
	return f, true
}

func formatSeconds(f float64) string {
	s := fmt.Sprintf("%.3f", f)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" {
		return "0"
	}
	return s
}
