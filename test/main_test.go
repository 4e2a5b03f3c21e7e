package test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/devidp"

	"github.com/jumpgate/jumpgate/test/harness"
)

func TestMain(m *testing.M) {
	// Invoked as $BROWSER by `jumpgate login`: act as the user's browser.
	if user := os.Getenv("JG_TEST_BROWSER_USER"); user != "" && len(os.Args) > 1 {
		os.Exit(fakeBrowser(user, os.Getenv("JG_TEST_IDP_CA"), os.Args[len(os.Args)-1]))
	}
	code := m.Run()
	harness.Cleanup()
	os.Exit(code)
}

func boolp(b bool) *bool { return &b }

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// fakeBrowser does what a person's browser does with the login URL: the
// IdP's real login form, then the redirect back to the CLI's loopback
// listener.
func fakeBrowser(user, caFile, authURL string) int {
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(caFile); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx := context.Background()
	redirect, err := devidp.BrowserLogin(ctx, hc, authURL, user, devidp.DemoPassword(user))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake browser:", err)
		return 1
	}
	resp, err := hc.Get(redirect)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake browser:", err)
		return 1
	}
	resp.Body.Close()
	return 0
}
