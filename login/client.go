package login

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/sshauth"
)

// maxResponseBytes bounds what is read from a server response.
const maxResponseBytes = 32 << 20

// APIError is a non-2xx answer from the jumpgate server.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the server's "error" text, or the status text
}

func (e *APIError) Error() string {
	return fmt.Sprintf("login: server refused the request (HTTP %d): %s", e.Status, e.Message)
}

// HTTPClient returns a client that verifies TLS against the system roots
// (SSL_CERT_FILE and SSL_CERT_DIR are honoured by Go) plus the PEM
// certificates in caFile, if not empty.
func HTTPClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("login: CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("login: CA file %s holds no PEM certificate", caFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// readAPIError turns a non-2xx response into an *APIError. The message is
// the JSON "error" field when there is one, else the first line of the body,
// else the status text; it is always one line.
func readAPIError(resp *http.Response) *APIError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := ""
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	} else {
		msg, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Status: resp.StatusCode, Message: msg}
}

// ErrCertExpired means the saved certificate is no longer valid: run
// `jumpgate login` again.
var ErrCertExpired = errors.New("login: certificate expired, run `jumpgate login` again")

// APIClient calls the jumpgate HTTPS API with the identity of the last login:
// every request is signed with the SSH certificate's key (package sshauth).
type APIClient struct {
	// BaseURL is the server URL, e.g. https://jumpgate.example.com:8443.
	BaseURL string
	// HTTP defaults to a client from HTTPClient("").
	HTTP *http.Client
	// Signer is a certificate signer (ssh.NewCertSigner), as LoadIdentity
	// returns.
	Signer ssh.Signer
	// Now and Rand default to time.Now and crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader
}

// NewAPIClient loads the identity under sshDir and returns a client for
// server (empty: the server saved by the last login), trusting caFile (empty:
// the CA file saved by the last login) besides the system roots.
func NewAPIClient(sshDir, server, caFile string) (*APIClient, error) {
	signer, _, saved, err := LoadIdentity(sshDir)
	if err != nil {
		return nil, err
	}
	if server == "" {
		server = saved.Server
	}
	if server == "" {
		return nil, errors.New("login: no server URL: pass --server or run `jumpgate login` first")
	}
	if caFile == "" {
		caFile = saved.CAFile
	}
	hc, err := HTTPClient(caFile)
	if err != nil {
		return nil, err
	}
	return &APIClient{BaseURL: server, HTTP: hc, Signer: signer}, nil
}

// Do sends method path (path may carry a query) with body encoded as JSON
// (nil: no body; []byte: sent as is) and decodes a 2xx answer into out:
// nil discards it, *[]byte receives the raw bytes, io.Writer gets them
// copied, anything else is JSON-decoded. A non-2xx answer is an *APIError.
func (c *APIClient) Do(ctx context.Context, method, path string, body any, out any) error {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	rnd := c.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	hc := c.HTTP
	if hc == nil {
		var err error
		if hc, err = HTTPClient(""); err != nil {
			return err
		}
	}
	if c.Signer == nil {
		return errors.New("login: API client has no identity")
	}
	if cert, ok := c.Signer.PublicKey().(*ssh.Certificate); ok && cert.ValidBefore != ssh.CertTimeInfinity &&
		!now().Before(time.Unix(int64(cert.ValidBefore), 0)) {
		return ErrCertExpired
	}

	var payload []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		payload = b
	default:
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("login: encode request: %w", err)
		}
	}
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if err := sshauth.SignRequest(req, payload, c.Signer, now(), rnd); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("login: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readAPIError(resp)
	}
	return decodeInto(resp.Body, out)
}

func decodeInto(r io.Reader, out any) error {
	r = io.LimitReader(r, maxResponseBytes)
	switch o := out.(type) {
	case nil:
		_, err := io.Copy(io.Discard, r)
		return err
	case *[]byte:
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("login: read response: %w", err)
		}
		*o = b
		return nil
	case io.Writer:
		if _, err := io.Copy(o, r); err != nil {
			return fmt.Errorf("login: read response: %w", err)
		}
		return nil
	default:
		if err := json.NewDecoder(r).Decode(out); err != nil {
			return fmt.Errorf("login: decode response: %w", err)
		}
		return nil
	}
}
