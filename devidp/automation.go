package devidp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// maxHops bounds the redirects BrowserLogin follows inside the provider.
const maxHops = 10

// BrowserLogin does what a browser would do with authURL (the full
// /authorize URL a relying party built): it follows the provider's redirects
// to the login page, submits the login form with username and password
// (as a same-origin browser form POST), follows the provider's redirects
// again and returns the first redirect that leaves the provider — the
// relying party's redirect_uri with ?code=...&state=... (or ?error=...) —
// without following it. A nil httpClient means http.DefaultClient; its
// redirect policy is not used.
//
// Errors: ErrInvalidCredentials, ErrLoginExpired, or *ResponseError for any
// other answer (e.g. 400 for an unregistered redirect URI).
func BrowserLogin(ctx context.Context, httpClient *http.Client, authURL, username, password string) (string, error) {
	hc := noRedirects(httpClient)
	start, err := url.Parse(authURL)
	if err != nil || !start.IsAbs() {
		return "", fmt.Errorf("devidp: browser login: bad authorize URL %q", authURL)
	}
	// The authorize endpoint is <issuer>/authorize; everything the login
	// walks through lives below the issuer path on the same origin.
	issuerPath := path.Dir(start.Path)
	if issuerPath == "/" {
		issuerPath = ""
	}
	ours := func(u *url.URL) bool {
		if u.Scheme != start.Scheme || u.Host != start.Host {
			return false
		}
		switch u.Path {
		case issuerPath + "/authorize", issuerPath + "/authorize/callback", issuerPath + PathLogin:
			return true
		}
		return false
	}

	submitted := false
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, start.String(), nil)
	if err != nil {
		return "", fmt.Errorf("devidp: browser login: %w", err)
	}
	for hop := 0; hop < maxHops; hop++ {
		resp, err := hc.Do(req)
		if err != nil {
			return "", fmt.Errorf("devidp: browser login: %w", err)
		}
		cur := req.URL
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			drain(resp)
			loc, err := cur.Parse(resp.Header.Get("Location"))
			if err != nil || resp.Header.Get("Location") == "" {
				return "", &ResponseError{StatusCode: resp.StatusCode, URL: cur.String(), Message: "redirect without a valid Location"}
			}
			if !ours(loc) {
				return loc.String(), nil
			}
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
			if err != nil {
				return "", fmt.Errorf("devidp: browser login: %w", err)
			}
		case resp.StatusCode == http.StatusOK && cur.Path == issuerPath+PathLogin && !submitted:
			drain(resp)
			submitted = true
			form := url.Values{
				FieldAuthRequestID: {cur.Query().Get(FieldAuthRequestID)},
				FieldUsername:      {username},
				FieldPassword:      {password},
			}
			req, err = formPost(ctx, cur, form)
			if err != nil {
				return "", err
			}
		default:
			return "", pageError(resp, cur)
		}
	}
	return "", fmt.Errorf("devidp: browser login: more than %d redirects", maxHops)
}

// CompleteDeviceLogin approves a device login (RFC 8628) the way the
// verification page's form does: it POSTs user_code, username and password
// to verificationURI (the verification_uri or verification_uri_complete of
// the device authorization response). A nil httpClient means
// http.DefaultClient.
//
// Errors: ErrInvalidCredentials, ErrInvalidUserCode, or *ResponseError.
func CompleteDeviceLogin(ctx context.Context, httpClient *http.Client, verificationURI, userCode, username, password string) error {
	u, err := url.Parse(verificationURI)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("devidp: device login: bad verification URI %q", verificationURI)
	}
	if userCode == "" {
		userCode = u.Query().Get(FieldUserCode)
	}
	req, err := formPost(ctx, u, url.Values{
		FieldUserCode: {userCode},
		FieldUsername: {username},
		FieldPassword: {password},
		FieldAction:   {"allow"},
	})
	if err != nil {
		return err
	}
	resp, err := noRedirects(httpClient).Do(req)
	if err != nil {
		return fmt.Errorf("devidp: device login: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		drain(resp)
		return nil
	}
	return pageError(resp, u)
}

func noRedirects(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

// formPost builds the request a browser sends for a same-origin
// <form method="post" action=""> on the page at u.
func formPost(ctx context.Context, u *url.URL, form url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("devidp: form post: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", u.Scheme+"://"+u.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return req, nil
}

func pageError(resp *http.Response, u *url.URL) error {
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return ErrInvalidCredentials
	case http.StatusNotFound:
		switch path.Base(u.Path) {
		case path.Base(PathDevice):
			return ErrInvalidUserCode
		case path.Base(PathLogin):
			return ErrLoginExpired
		}
	}
	return &ResponseError{StatusCode: resp.StatusCode, URL: redactQuery(u), Message: bodyMessage(resp.Body)}
}

// redactQuery drops the query, which may carry codes and request ids.
func redactQuery(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}

// bodyMessage extracts the error sentence of one of our pages, or else the
// first non-empty line of the body (the zitadel library answers text/plain).
func bodyMessage(r io.Reader) string {
	body, _ := io.ReadAll(io.LimitReader(r, 16<<10))
	const marker = `<p class="error" role="alert">`
	if i := bytes.Index(body, []byte(marker)); i >= 0 {
		rest := body[i+len(marker):]
		if j := bytes.IndexByte(rest, '<'); j >= 0 {
			return clip(html.UnescapeString(string(rest[:j])))
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			return clip(line)
		}
	}
	return ""
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}
