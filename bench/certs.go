package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/identity"
	"github.com/jumpgate/jumpgate/server"
)

func init() {
	register(Benchmark{ID: "5", Title: "certificates issued per second", Run: runCerts})
}

// runCerts drives the real certificate endpoint in process: the httpapi
// handler of a server Core (bbolt storage with its durable serial blocks
// and audit chain, the CA keys) with a real identity.Verifier against the
// dev IdP. ID tokens are minted through the IdP's real login flow before
// the timed part. A token is single-use per verifier, so each round gets a
// fresh verifier (and discovery/JWKS fetched before the clock starts) and
// reuses the same tokens. The reference is the ceiling: ed25519 signing
// of the same certificates with the same user CA, nothing else.
func runCerts(ctx context.Context, e *Env) ([]Row, error) {
	n, workers := e.Flags.Certs, e.Flags.Workers
	core, err := e.openCore(ctx)
	if err != nil {
		return nil, err
	}
	defer core.Close()

	t0 := time.Now()
	tokens, err := e.mintTokens(n)
	if err != nil {
		return nil, err
	}
	e.Log.Info("ID tokens minted", "count", n, "took", time.Since(t0).Round(time.Millisecond))
	keys := make([]string, 256)
	pubs := make([]ssh.PublicKey, len(keys))
	for i := range keys {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		pubs[i], _ = ssh.NewPublicKey(pub)
		keys[i] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pubs[i])))
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	row := Row{ID: "5", Title: "certificates issued per second (ID token verify + policy + sign + durable serial + audit), in process", Unit: "/s",
		RefName: "(ed25519 cert signing only)", Goal: Goal{AbsAtLeast, 2000}}
	for round := 0; round < e.Flags.CertRounds; round++ {
		// jumpgate.
		v, err := identity.New(nil, identity.Issuer{URL: e.IdP.Issuer, Audience: e.IdP.ClientID, CAFile: e.IdP.CAFile})
		if err != nil {
			return nil, err
		}
		if _, err := v.Verify(ctx, tokens[0]); err != nil { // discovery and JWKS, untimed
			return nil, fmt.Errorf("bench: warm-up verify: %w", err)
		}
		api := core.API(nil)
		api.Tokens, api.RateLimit, api.Logger = v, 0, quiet
		h := api.Handler()
		var stopProf func()
		if e.Flags.ProfileDir != "" && round == e.Flags.CertRounds-1 {
			stopProf = startPprof(e, "certs.pprof")
		}
		d, err := parallel(workers, n, func(i int) error {
			body, _ := json.Marshal(map[string]string{"public_key": keys[i%len(keys)], "ttl": "10m"})
			req := httptest.NewRequest(http.MethodPost, "/v1/ssh/certificates", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+tokens[i])
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				return fmt.Errorf("bench: certificate request %d: %d %s", i, rec.Code, rec.Body.String())
			}
			return nil
		})
		if stopProf != nil {
			stopProf()
		}
		if err != nil {
			return []Row{row}, err
		}
		row.JG = append(row.JG, float64(n)/d.Seconds())

		// Ceiling: sign the same number of certificates, same concurrency.
		signer := core.Authority.User
		d, err = parallel(workers, n, func(i int) error {
			now := time.Now()
			c := &ssh.Certificate{Key: pubs[i%len(pubs)], Serial: uint64(i + 1), CertType: ssh.UserCert, KeyId: fmt.Sprintf("alice/%d", i+1),
				ValidPrincipals: []string{"root"}, ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(10 * time.Minute).Unix()),
				Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}}}
			return c.SignCert(rand.Reader, signer)
		})
		if err != nil {
			return []Row{row}, err
		}
		row.Ref = append(row.Ref, float64(n)/d.Seconds())
		e.Log.Info("certificates", "round", round+1, "jumpgate/s", num(row.JG[len(row.JG)-1]), "ed25519/s", num(row.Ref[len(row.Ref)-1]))
	}
	row.Method = fmt.Sprintf("%d requests per round over %d workers into httpapi's handler (no TLS/HTTP transport); fresh identity.Verifier per round, tokens minted beforehand via the dev IdP login flow (RS256)", n, workers)
	return []Row{row}, nil
}

// parallel runs f(0..n-1) on workers goroutines and returns the wall time.
func parallel(workers, n int, f func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), first
}

// mintTokens gets n ID tokens for alice through the IdP's real
// authorization code + PKCE flow, four logins at a time.
func (e *Env) mintTokens(n int) ([]string, error) {
	tokens := make([]string, n)
	_, err := parallel(4, n, func(i int) error {
		return catch(func() { tokens[i] = e.IdP.Token(e.TB, "alice") })
	})
	return tokens, err
}

// openCore opens a server Core (what `jumpgate server` runs the API on)
// on a data dir of its own, with the bench CA keys and policy.
func (e *Env) openCore(ctx context.Context) (*server.Core, error) {
	dir := e.TB.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(benchPolicy), 0o600); err != nil {
		return nil, err
	}
	cfgText := fmt.Sprintf("data_dir: %s\nlisten: {https: \"127.0.0.1:0\"}\noidc: {issuer: %q, client_id: %q, ca_file: %q}\npolicy_file: %s\n%s",
		filepath.Join(dir, "data"), e.IdP.Issuer, e.IdP.ClientID, e.IdP.CAFile, pol, e.Keys.CAConfig("", ""))
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(cfgText), 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	return server.OpenCore(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func startPprof(e *Env, name string) func() {
	if err := os.MkdirAll(e.Flags.ProfileDir, 0o755); err != nil {
		return func() {}
	}
	file := filepath.Join(e.Flags.ProfileDir, name)
	f, err := os.Create(file)
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		e.Log.Info("pprof profile written", "file", file)
	}
}
