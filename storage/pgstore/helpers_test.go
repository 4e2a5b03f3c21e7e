package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

var dbCounter atomic.Int64

// testLog sends log lines to t.Log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testOptions(t *testing.T) Options {
	return Options{
		Logger:         slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ReconnectDelay: 10 * time.Millisecond,
	}
}

// newDB creates an empty database owned by the password-authenticated,
// non-superuser role on srv and returns its URL.
func newDB(t *testing.T, srv *pgtest.Server) string {
	t.Helper()
	name := fmt.Sprintf("jg%d", dbCounter.Add(1))
	if _, err := srv.SuperSQL("postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, pgtest.ScramUser)); err != nil {
		t.Fatal(err)
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(pgtest.ScramUser, pgtest.ScramPassword),
		Host:     srv.Addr,
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// openT opens a Store and closes it in t.Cleanup.
func openT(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := OpenWith(ctxT(t), dsn, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ctxT is a context that ends with the test, with a generous deadline so a
// hang fails instead of blocking the run.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// replicas starts a server and opens n Stores on one new database at once,
// as replicas starting together would.
func replicas(t *testing.T, n int) (*pgtest.Server, string, []*Store) {
	t.Helper()
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := newDB(t, srv)
	stores := make([]*Store, n)
	errs := make(chan error, n)
	for i := range stores {
		go func() {
			s, err := OpenWith(ctxT(t), dsn, testOptions(t))
			stores[i] = s
			errs <- err
		}()
	}
	var firstErr error
	for range stores {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
	}
	if firstErr != nil {
		t.Fatalf("concurrent open: %v", firstErr)
	}
	return srv, dsn, stores
}

// dbName is the database name of a URL made by newDB.
func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}
