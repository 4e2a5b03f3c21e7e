package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jumpgate/jumpgate/test/harness"
)

// runServerOnce runs `jumpgate server --config cfg` expecting it to refuse
// to start; the context only guards against a hang.
func runServerOnce(t *testing.T, cfg string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := harness.Run(ctx, nil, harness.Binary(t), "server", "--config", cfg)
	if ctx.Err() != nil {
		t.Fatalf("jumpgate server hung instead of refusing to start:\n%s", out)
	}
	return out, err
}

// TestStorageLockedOrCorrupt: a second server on a data_dir in use refuses
// to start (the bbolt lock times out, it does not hang); a corrupt or
// truncated store refuses to start with a clear message and is left
// byte-for-byte as it was; a tampered audit chain is reported at its first
// bad record by `jumpgate audit verify`.
func TestStorageLockedOrCorrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	idp := harness.StartIdP(t)
	srv := harness.StartServer(t, harness.ServerOptions{IdP: idp, Policy: bastionPolicy})
	srv.Login(t, "alice")
	srv.Login(t, "dave")

	t.Run("locked by a running server", func(t *testing.T) {
		// The same data_dir, other ports.
		b, err := os.ReadFile(srv.ConfigFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg := regexp.MustCompile(`listen: \{[^}]*\}`).ReplaceAllString(string(b),
			`listen: {ssh: "`+harness.FreePort(t)+`", https: "`+harness.FreePort(t)+`"}`)
		second := filepath.Join(t.TempDir(), "second.yaml")
		if err := os.WriteFile(second, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runServerOnce(t, second)
		if err == nil || !strings.Contains(out, "another jumpgate") {
			t.Fatalf("second server on the same data_dir: %v\n%s", err, out)
		}
		t.Logf("refused: %s", strings.TrimSpace(out))
		// The first one is untouched: API and admin socket still answer.
		resp, err := harness.TLSClient(t, srv.CAFile).Get(srv.URL + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first server after the second tried: %v %v", err, resp)
		}
		resp.Body.Close()
		srv.MustJG(t, "audit", "verify")
	})

	if err := srv.Proc.Stop(15 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	dbPath := filepath.Join(srv.DataDir, "jumpgate.db")
	orig, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 8192)
	rand.Read(garbage)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"garbage over the meta pages", append(append([]byte(nil), garbage...), orig[len(garbage):]...)},
		{"only garbage", garbage},
		{"truncated to 16 KiB", orig[:16384]},
		{"truncated inside the first page", orig[:100]},
		{"empty", []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(dbPath, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runServerOnce(t, srv.ConfigFile)
			if err == nil || !strings.Contains(out, "jumpgate.db") || !strings.Contains(out, "not modified") ||
				strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Fatalf("server on a corrupt store: %v\n%s", err, out)
			}
			t.Logf("refused: %s", strings.TrimSpace(out))
			got, rerr := os.ReadFile(dbPath)
			if rerr != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("the corrupt store was modified (%d bytes, was %d): %v", len(got), len(tc.data), rerr)
			}
		})
	}

	t.Run("tampered audit chain", func(t *testing.T) {
		if err := os.WriteFile(dbPath, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		srv.MustJG(t, "audit", "verify")
		// Rewrite event 2's user, leaving its hash as it was.
		db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("audit"))
			key := binary.BigEndian.AppendUint64(nil, 2)
			line := b.Get(key) // the event's JSON line, ending with its hash
			ev := bytes.Replace(line, []byte(`"user":"`), []byte(`"user":"mallory+`), 1)
			if bytes.Equal(ev, line) {
				t.Fatalf("event 2 has no user: %s", line)
			}
			return b.Put(key, ev)
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		out, err := srv.JG(t, "audit", "verify")
		if err == nil || !strings.Contains(out, "event 2") {
			t.Fatalf("audit verify on a tampered chain: %v\n%s", err, out)
		}
		t.Logf("audit verify: %s", strings.TrimSpace(out))
	})
}
