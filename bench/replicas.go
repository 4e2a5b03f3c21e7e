package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

func init() {
	register(Benchmark{ID: "9", Rows: []string{"9b"}, Title: "scale-out: certificates/s and new sessions/s, 3 replicas vs 1 on PostgreSQL", Run: runReplicas})
}

// replicaCerts and replicaSessions are the work of one measured phase.
const (
	replicaCerts    = 200
	replicaSessions = 40
	replicaWorkers  = 8
	replicaRounds   = 2
)

// runReplicas starts a PostgreSQL and three `jumpgate server` processes on
// it (same CA keys, same target sshd as the rest of the bench) and measures,
// over real HTTPS and real SSH, certificates issued per second and new
// recorded sessions per second (bastion handshake, direct-tcpip, inner
// handshake, exec true, recording chunks in PostgreSQL) when the load goes to
// one replica versus round-robin to three, phases interleaved. On a machine
// with few cores the three replicas share them, so the ratio shows the
// coordination cost rather than a speed-up.
func runReplicas(ctx context.Context, e *Env) ([]Row, error) {
	pg := pgtest.Start(e.TB, pgtest.Options{Settings: []string{"max_connections = 200"}})
	if _, err := pg.SuperSQL("postgres", "CREATE DATABASE jumpgate OWNER "+pgtest.ScramUser); err != nil {
		return nil, err
	}
	url := fmt.Sprintf("postgres://%s:%s@%s/jumpgate?sslmode=disable", pgtest.ScramUser, pgtest.ScramPassword, pg.Addr)
	labels := map[string]string{"env": "bench"}
	opts := harness.ServerOptions{IdP: e.IdP, Policy: benchPolicy,
		ExtraConfig: fmt.Sprintf("ca: {user_key_file: %s, host_key_file: %s, rate_limit: 1000000}\nstorage: %s\n", e.Keys.UserFile, e.Keys.HostFile, url),
		Targets:     []harness.Target{{Name: recordedTarget, Kind: "ssh", Address: e.Target.Addr, HostKey: "@cert-authority", Labels: labels}},
	}
	e.Log.Info("starting three jumpgate replicas on PostgreSQL")
	srvs := harness.StartServers(e.TB, opts, opts, opts)
	user := srvs[0].Login(e.TB, "alice")
	signer := loadCertSigner(e.TB, user.SSHDir)
	clients := make([]*http.Client, len(srvs))
	for i, s := range srvs {
		clients[i] = harness.TLSClient(e.TB, s.CAFile)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := ssh.NewPublicKey(pub)
	body, _ := json.Marshal(map[string]string{"public_key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))), "ttl": "10m"})

	certs := Row{ID: "9", Title: "certificates/s over HTTPS, 3 replicas round-robin (jumpgate column) vs 1 replica (reference)", Unit: "/s", RefName: "(1 replica)"}
	sess := Row{ID: "9b", Title: "new recorded sessions/s (ssh -J equivalent, exec true), 3 replicas vs 1", Unit: "/s", RefName: "(1 replica)"}
	for round := 0; round < replicaRounds; round++ {
		for _, n := range []int{1, 3} {
			tokens, err := e.mintTokens(replicaCerts)
			if err != nil {
				return []Row{certs, sess}, err
			}
			d, err := parallel(replicaWorkers, replicaCerts, func(i int) error {
				k := i % n
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srvs[k].URL+"/v1/ssh/certificates", strings.NewReader(string(body)))
				req.Header.Set("Authorization", "Bearer "+tokens[i])
				req.Header.Set("Content-Type", "application/json")
				resp, err := clients[k].Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("bench: certificate at replica %d: %d %s", k, resp.StatusCode, b)
				}
				return nil
			})
			if err != nil {
				return []Row{certs, sess}, err
			}
			rate := float64(replicaCerts) / d.Seconds()
			d, err = parallel(replicaWorkers, replicaSessions, func(i int) error {
				return replicaSession(e, signer, srvs[i%n].SSHAddr)
			})
			if err != nil {
				return []Row{certs, sess}, err
			}
			srate := float64(replicaSessions) / d.Seconds()
			if n == 1 {
				certs.Ref, sess.Ref = append(certs.Ref, rate), append(sess.Ref, srate)
			} else {
				certs.JG, sess.JG = append(certs.JG, rate), append(sess.JG, srate)
			}
			e.Log.Info("replicas", "round", round+1, "replicas", n, "certs/s", num(rate), "sessions/s", num(srate))
		}
	}
	method := fmt.Sprintf("%d rounds; per phase %d POST /v1/ssh/certificates (fresh ID tokens) and %d in-process ssh -J sessions to a recorded target, %d workers; all processes share this machine's cores",
		replicaRounds, replicaCerts, replicaSessions, replicaWorkers)
	certs.Method, sess.Method = method, method
	for _, s := range srvs {
		_ = s.Proc.Stop(15 * time.Second)
	}
	return []Row{certs, sess}, nil
}

// replicaSession opens one recorded session through the bastion at addr and
// runs `true` in it.
func replicaSession(e *Env, signer ssh.Signer, addr string) error {
	cfg := func(user string) *ssh.ClientConfig {
		c := e.clientConfig(user)
		c.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
		return c
	}
	outer, err := ssh.Dial("tcp", addr, cfg("alice"))
	if err != nil {
		return fmt.Errorf("bench: dial replica %s: %w", addr, err)
	}
	defer outer.Close()
	conn, err := outer.Dial("tcp", recordedTarget+":22")
	if err != nil {
		return fmt.Errorf("bench: direct-tcpip via %s: %w", addr, err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, recordedTarget+":22", cfg("root"))
	if err != nil {
		conn.Close()
		return fmt.Errorf("bench: inner handshake via %s: %w", addr, err)
	}
	inner := ssh.NewClient(c, chans, reqs)
	defer inner.Close()
	s, err := inner.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	if out, err := s.CombinedOutput("true"); err != nil {
		return fmt.Errorf("bench: exec via %s: %w: %s", addr, err, out)
	}
	return nil
}
