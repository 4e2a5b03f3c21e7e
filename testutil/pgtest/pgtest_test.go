package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestServerLoginMethods(t *testing.T) {
	s := Start(t, Options{TLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, user, pw, ssl, method string
	}{
		{"scram", ScramUser, ScramPassword, "disable", "scram"},
		{"md5", MD5User, MD5Password, "disable", "md5"},
		{"trust", TrustUser, "", "disable", "trust"},
		{"tls-verify-full", ScramUser, ScramPassword, "verify-full sslrootcert=" + s.CAFile, "scram"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := strings.Replace(s.DSN(tc.user, tc.pw), "sslmode=disable", "sslmode="+tc.ssl, 1)
			c, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			res := c.ExecParams(ctx, "SELECT current_user", nil, nil, nil, nil).Read()
			if res.Err != nil || string(res.Rows[0][0]) != tc.user {
				t.Fatalf("got %v %q", res.Err, res.Rows)
			}
		})
	}
	t.Run("wrong password refused", func(t *testing.T) {
		if _, err := pgconn.Connect(ctx, s.DSN(ScramUser, "nope")); err == nil {
			t.Fatal("wrong scram password accepted")
		}
	})
	t.Run("psql", func(t *testing.T) {
		r, err := Psql(ctx, s.Addr, TrustUser, Database, "", "-A", "-t", "-c", "SELECT 40+2")
		if err != nil || strings.TrimSpace(r.Stdout) != "42" {
			t.Fatalf("psql: %v %+v", err, r)
		}
	})
}
