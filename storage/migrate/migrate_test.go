package migrate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/storage/boltstore"
	"github.com/jumpgate/jumpgate/storage/pgstore"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

// TestBoltToPostgres fills a bbolt store the way a server does, copies it
// into a real PostgreSQL, and checks everything arrived, the chain
// verifies, and serials do not repeat.
func TestBoltToPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	src := boltSource(t)
	log := audit.New(src, nil, nil)
	var last uint64
	for i := 0; i < 30; i++ {
		n, _ := src.NextSerial(ctx)
		last = n
		c := storage.CertRecord{Serial: n, KeyID: fmt.Sprintf("u%d/%d", i, n), User: fmt.Sprintf("u%d", i), IssuedAt: time.Now().UTC()}
		if _, err := log.EmitWith(ctx, audit.Event{Type: audit.CertIssued, User: c.User, Details: map[string]any{"serial": n}}, func(ctx context.Context, b storage.AuditBuilder) (storage.AuditRecord, error) {
			return src.PutCertAudited(ctx, c, b)
		}); err != nil {
			t.Fatal(err)
		}
	}
	src.AddRevocation(ctx, storage.Revocation{Serial: 3, By: "admin", At: time.Now().UTC()})
	src.CreateRequest(ctx, storage.Request{ID: "r-1", Kind: storage.KindAccess, User: "u1", Status: storage.StatusApproved, CreatedAt: time.Now().UTC()})
	src.PutSession(ctx, storage.Session{ID: "s-1", User: "u1", Status: storage.SessionEnded, Start: time.Now().UTC()})
	src.PutKVIfAbsent(ctx, "ca/user", []byte("user-ca-pem"))

	pg := pgtest.Start(t, pgtest.Options{})
	if _, err := pg.SuperSQL("postgres", "CREATE DATABASE jg OWNER "+pgtest.ScramUser); err != nil {
		t.Fatal(err)
	}
	dst, err := pgstore.Open(ctx, fmt.Sprintf("postgres://%s:%s@%s/jg?sslmode=disable", pgtest.ScramUser, pgtest.ScramPassword, pg.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	r, err := Copy(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if r.Certs != 30 || r.AuditEvents != 30 || r.Revocations != 1 || r.Requests != 1 || r.Sessions != 1 || r.Keys != 1 {
		t.Fatalf("report %+v", r)
	}
	if n, err := audit.Verify(ctx, dst); err != nil || n != 30 {
		t.Fatalf("verify target: %d %v", n, err)
	}
	if next, _ := dst.NextSerial(ctx); next <= last {
		t.Fatalf("target serial %d repeats the source's (last %d)", next, last)
	}
	if v, _ := dst.GetKV(ctx, "ca/user"); string(v) != "user-ca-pem" {
		t.Fatalf("key %q", v)
	}
	if _, err := Copy(ctx, src, dst); err == nil {
		t.Fatal("a second migration into a non-empty target was accepted")
	}
}

// TestCopyRecordings: recording files of a bbolt installation land in
// PostgreSQL's chunks byte for byte (a file bigger than one chunk too), and
// a session without its file is counted missing.
func TestCopyRecordings(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	src := boltSource(t)
	dir := recordings.Dir{Path: t.TempDir()}
	big := bytes.Repeat([]byte(`[0.5, "o", "x"]`+"\n"), recordings.ImportChunkSize/8)
	files := map[string][]byte{"2026-01-01/a.cast": []byte(`{"version": 2, "width": 80, "height": 24}` + "\n"), "2026-01-01/b.cast": big}
	for name, b := range files {
		p := filepath.Join(dir.Path, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"2026-01-01/a.cast", "2026-01-01/b.cast", "2026-01-01/gone.cast"} {
		if err := src.PutSession(ctx, storage.Session{ID: fmt.Sprint("s", i), Recording: name, Start: time.Now().UTC(), Status: storage.SessionEnded}); err != nil {
			t.Fatal(err)
		}
	}
	pg := pgtest.Start(t, pgtest.Options{})
	if _, err := pg.SuperSQL("postgres", "CREATE DATABASE jgr OWNER "+pgtest.ScramUser); err != nil {
		t.Fatal(err)
	}
	dst, err := pgstore.Open(ctx, fmt.Sprintf("postgres://%s:%s@%s/jgr?sslmode=disable", pgtest.ScramUser, pgtest.ScramPassword, pg.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	n, missing, err := CopyRecordings(ctx, src, dir, dst)
	if err != nil || n != 2 || missing != 1 {
		t.Fatalf("CopyRecordings = %d, %d missing, %v", n, missing, err)
	}
	for name, want := range files {
		sum, size, err := recordings.Chunked{Chunks: dst}.Hash(ctx, name)
		wantSum, wantSize, _ := dir.Hash(ctx, name)
		if err != nil || sum != wantSum || size != wantSize {
			t.Fatalf("%s in PostgreSQL: %s %d %v, file %s %d (%d bytes)", name, sum, size, err, wantSum, wantSize, len(want))
		}
	}
}

// boltSource is an empty bbolt store to migrate from, closed with the test.
func boltSource(t *testing.T) *boltstore.Store {
	t.Helper()
	src, err := boltstore.Open(filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}
