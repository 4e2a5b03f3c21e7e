package devidp

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// maxFormBytes bounds a login or device form body.
const maxFormBytes = 16 << 10

// Form field names of the login and device pages (also what curl -d sends).
const (
	FieldAuthRequestID = "authRequestID"
	FieldUsername      = "username"
	FieldPassword      = "password"
	FieldUserCode      = "user_code"
	FieldAction        = "action" // device page: "allow" (default) or "deny"
)

func (p *Provider) buildHandler() http.Handler {
	forms := http.NewServeMux()
	forms.HandleFunc("GET "+PathLogin, p.loginPage)
	forms.HandleFunc("POST "+PathLogin, p.loginSubmit)
	forms.HandleFunc("GET "+PathDevice, p.devicePage)
	forms.HandleFunc("POST "+PathDevice, p.deviceSubmit)
	forms.HandleFunc("GET "+PathLoggedOut, p.loggedOutPage)

	// Cross-origin browser POSTs to the forms are refused (Sec-Fetch-Site /
	// Origin checks); non-browser clients such as curl send neither header
	// and pass, which is what terminal-only logins need. Login requests and
	// user codes are unguessable, so a forged form post cannot pick them.
	formHandler := op.NewIssuerInterceptor(p.op.IssuerFromRequest).Handler(
		http.NewCrossOriginProtection().Handler(forms))

	mux := http.NewServeMux()
	for _, path := range []string{PathLogin, PathDevice, PathLoggedOut} {
		mux.Handle(path, formHandler)
	}
	mux.Handle("/", p.op)
	if p.prefix == "" {
		return mux
	}
	return http.StripPrefix(p.prefix, mux)
}

var pages = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} — jumpgate DEVELOPMENT IdP</title>
<style>
body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem}
.banner{background:#b00020;color:#fff;font-weight:bold;padding:.8rem;text-align:center;border-radius:4px}
.error{color:#b00020;font-weight:bold}
label{display:block;margin-top:.8rem}
input{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem}
code{background:#eee;padding:0 .2rem}
</style></head>
<body>
<p class="banner" role="alert">DEVELOPMENT IdP — do not use in production</p>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if .ClientID}}<p>Application <code>{{.ClientID}}</code> asks for: {{range $i, $s := .Scopes}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}</p>{{end}}
{{if .Form}}
<form method="post" action="" autocomplete="off">
{{if .AuthRequestID}}<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">{{end}}
{{if .Device}}<label>Code shown on your device <input name="user_code" value="{{.UserCode}}" required autocapitalize="characters" spellcheck="false"></label>{{end}}
<label>Username <input name="username" value="{{.Username}}" required autofocus autocapitalize="none" spellcheck="false"></label>
<label>Password <input name="password" type="password" required></label>
{{if .Device}}<button type="submit" name="action" value="allow">Allow device</button>
<button type="submit" name="action" value="deny">Deny</button>
{{else}}<button type="submit">Sign in</button>{{end}}
</form>
{{end}}
</body></html>
`))

type pageData struct {
	Title         string
	Error         string
	Message       string
	ClientID      string
	Scopes        []string
	Form          bool
	Device        bool
	AuthRequestID string
	UserCode      string
	Username      string
}

// render writes a page with the security headers every page gets.
func (p *Provider) render(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	var buf bytes.Buffer
	if err := pages.Execute(&buf, d); err != nil {
		p.log.ErrorContext(r.Context(), "render page", "error", err)
		http.Error(w, "devidp: internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	return r.ParseForm()
}

// --- authorization code login --------------------------------------------------

func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get(FieldAuthRequestID)
	clientID, scopes, err := p.store.loginRequest(id)
	if err != nil {
		p.render(w, r, http.StatusNotFound, pageData{Title: "Sign in", Error: "This login request is unknown, expired or already used. Start the login again."})
		return
	}
	p.render(w, r, http.StatusOK, pageData{Title: "Sign in", ClientID: clientID, Scopes: scopes, Form: true, AuthRequestID: id})
}

func (p *Provider) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		p.render(w, r, http.StatusBadRequest, pageData{Title: "Sign in", Error: "The form could not be read."})
		return
	}
	id := r.PostForm.Get(FieldAuthRequestID)
	if id == "" {
		id = r.URL.Query().Get(FieldAuthRequestID)
	}
	username := strings.TrimSpace(r.PostForm.Get(FieldUsername))
	password := r.PostForm.Get(FieldPassword)
	clientID, scopes, err := p.store.loginRequest(id)
	if err != nil {
		p.render(w, r, http.StatusNotFound, pageData{Title: "Sign in", Error: "This login request is unknown, expired or already used. Start the login again."})
		return
	}
	u, ok := p.store.checkPassword(username, password)
	if !ok {
		p.log.WarnContext(r.Context(), "login failed", "user", username, "client", clientID)
		p.render(w, r, http.StatusUnauthorized, pageData{
			Title: "Sign in", Error: "Invalid username or password.",
			ClientID: clientID, Scopes: scopes, Form: true, AuthRequestID: id, Username: username,
		})
		return
	}
	if err := p.store.completeLogin(id, u); err != nil {
		p.render(w, r, http.StatusNotFound, pageData{Title: "Sign in", Error: "This login request is unknown, expired or already used. Start the login again."})
		return
	}
	p.log.InfoContext(r.Context(), "login", "user", u.Username, "client", clientID)
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), id), http.StatusSeeOther)
}

// --- device verification (RFC 8628 section 3.3) -------------------------------

func (p *Provider) devicePage(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get(FieldUserCode)
	d := pageData{Title: "Sign in a device", Form: true, Device: true, UserCode: code}
	if code != "" {
		if clientID, scopes, err := p.store.pendingDevice(code); err == nil {
			d.ClientID, d.Scopes = clientID, scopes
		}
	}
	p.render(w, r, http.StatusOK, d)
}

func (p *Provider) deviceSubmit(w http.ResponseWriter, r *http.Request) {
	d := pageData{Title: "Sign in a device", Form: true, Device: true}
	if err := parseForm(w, r); err != nil {
		d.Error = "The form could not be read."
		p.render(w, r, http.StatusBadRequest, d)
		return
	}
	d.UserCode = r.PostForm.Get(FieldUserCode)
	d.Username = strings.TrimSpace(r.PostForm.Get(FieldUsername))
	password := r.PostForm.Get(FieldPassword)
	approve := true
	switch r.PostForm.Get(FieldAction) {
	case "", "allow":
	case "deny":
		approve = false
	default:
		d.Error = "Unknown action."
		p.render(w, r, http.StatusBadRequest, d)
		return
	}
	if d.UserCode == "" || d.Username == "" || password == "" {
		d.Error = "Code, username and password are all required."
		p.render(w, r, http.StatusBadRequest, d)
		return
	}
	clientID, scopes, err := p.store.pendingDevice(d.UserCode)
	if err != nil {
		d.Error = "This code is unknown, expired or already used."
		p.render(w, r, http.StatusNotFound, d)
		return
	}
	d.ClientID, d.Scopes = clientID, scopes
	u, ok := p.store.checkPassword(d.Username, password)
	if !ok {
		p.log.WarnContext(r.Context(), "device login failed", "user", d.Username, "client", clientID)
		d.Error = "Invalid username or password."
		p.render(w, r, http.StatusUnauthorized, d)
		return
	}
	if err := p.store.decideDevice(d.UserCode, u, approve); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrInvalidUserCode) {
			status = http.StatusNotFound
		}
		d.Error = "This code is unknown, expired or already used."
		p.render(w, r, status, d)
		return
	}
	p.log.InfoContext(r.Context(), "device login", "user", u.Username, "client", clientID, "approved", approve)
	msg := "Device signed in as " + u.Username + ". You can return to your device."
	if !approve {
		msg = "Device sign-in denied."
	}
	p.render(w, r, http.StatusOK, pageData{Title: "Sign in a device", Message: msg})
}

func (p *Provider) loggedOutPage(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, pageData{Title: "Signed out", Message: "You are signed out of the development IdP."})
}
