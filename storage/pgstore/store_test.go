package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

func TestSerialsUniqueAcrossReplicas(t *testing.T) {
	_, _, stores := replicas(t, 2)
	ctx := ctxT(t)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for _, s := range stores {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					n, err := s.NextSerial(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if n == 0 || seen[n] {
						t.Errorf("serial %d issued twice or zero", n)
					}
					seen[n] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(seen) != 800 {
		t.Fatalf("%d distinct serials, want 800", len(seen))
	}
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	srv, dsn, _ := replicas(t, 3)
	ms, err := loadMigrations(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	name := dbName(t, dsn)
	got, err := srv.SuperSQL(name, "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range ms {
		want = append(want, strconv.Itoa(m.Version))
	}
	if strings.TrimSpace(got) != strings.Join(want, ",") {
		t.Fatalf("schema_migrations = %q, want %q", got, strings.Join(want, ","))
	}
	// A later start finds everything applied and changes nothing.
	s := openT(t, dsn)
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got2, _ := srv.SuperSQL(name, "SELECT count(*) FROM schema_migrations"); strings.TrimSpace(got2) != strconv.Itoa(len(ms)) {
		t.Fatalf("reopen changed schema_migrations: %q", got2)
	}
}

func TestUnknownSchemaVersionRefused(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := newDB(t, srv)
	openT(t, dsn).Close()
	name := dbName(t, dsn)
	if _, err := srv.SuperSQL(name, "INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctxT(t), dsn)
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("open newer schema = %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), "9999") {
		t.Fatalf("error does not name the version: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := newDB(t, srv)
	wrongPW := strings.Replace(dsn, pgtest.ScramPassword, "hunter2-wrong", 1)
	for _, tc := range []struct {
		name, url string
	}{
		{"unparsable", "postgres://%zz"},
		{"unparsable with password", "postgres://u:secretpw@127.0.0.1:notaport/x"},
		{"wrong password", wrongPW},
		{"no such database", strings.Replace(dsn, "/jg", "/nope", 1)},
		{"nobody listening", "postgres://u:secretpw@127.0.0.1:1/x?sslmode=disable&connect_timeout=5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(ctxT(t), tc.url)
			if err == nil {
				s.Close()
				t.Fatal("open succeeded")
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			for _, secret := range []string{"hunter2-wrong", "secretpw", pgtest.ScramPassword} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks the password: %v", err)
				}
			}
		})
	}
}

func TestLoadMigrations(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for _, tc := range []struct {
		name    string
		files   fstest.MapFS
		want    []int
		wantErr string
	}{
		{"ordered by number", fstest.MapFS{"m/0010_b.sql": sql, "m/0002_a.sql": sql}, []int{2, 10}, ""},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": sql, "m/1_b.sql": sql}, nil, "share version 1"},
		{"no number", fstest.MapFS{"m/init.sql": sql}, nil, "NNNN_name"},
		{"zero", fstest.MapFS{"m/0000_a.sql": sql}, nil, "NNNN_name"},
		{"not sql", fstest.MapFS{"m/0001_a.txt": sql}, nil, "NNNN_name"},
		{"no name", fstest.MapFS{"m/0001_.sql": sql}, nil, "NNNN_name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := loadMigrations(tc.files, "m")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.Version)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("versions = %v, want %v", got, tc.want)
			}
		})
	}
	ms, err := loadMigrations(migrationFS, "migrations")
	if err != nil || len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("embedded migrations = %v, %v", ms, err)
	}
}

func TestRequestsSessionsKV(t *testing.T) {
	_, _, stores := replicas(t, 2)
	a, b := stores[0], stores[1]
	ctx := ctxT(t)
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)

	r := storage.Request{ID: "r1", Kind: storage.KindCommand, User: "alice", Status: storage.StatusPending, CreatedAt: t0, Groups: []string{"dev"}}
	if err := a.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateRequest(ctx, r); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("duplicate create = %v", err)
	}
	if err := a.CreateRequest(ctx, storage.Request{ID: "r0", User: "bob", Status: storage.StatusPending, CreatedAt: t0.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	got, err := b.UpdateRequest(ctx, "r1", func(r *storage.Request) error {
		r.Status, r.DecidedBy, r.DecidedAt = storage.StatusApproved, "carol", t0.Add(time.Second)
		return nil
	})
	if err != nil || got.Status != storage.StatusApproved {
		t.Fatalf("update = %v %v", got, err)
	}
	if r1, err := a.Request(ctx, "r1"); err != nil || r1.DecidedBy != "carol" || !r1.CreatedAt.Equal(t0) || r1.Groups[0] != "dev" {
		t.Fatalf("request after update = %+v %v", r1, err)
	}
	refuse := errors.New("not yours to approve")
	if _, err := a.UpdateRequest(ctx, "r1", func(r *storage.Request) error { r.Status = storage.StatusDenied; return refuse }); err != refuse {
		t.Fatalf("fn error = %v, want it returned as is", err)
	}
	if r1, _ := a.Request(ctx, "r1"); r1.Status != storage.StatusApproved {
		t.Fatalf("failed update was stored: %v", r1.Status)
	}
	if _, err := a.Request(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing = %v", err)
	}
	if _, err := a.UpdateRequest(ctx, "nope", func(*storage.Request) error { return nil }); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("update missing = %v", err)
	}
	all, err := b.Requests(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "r0" || all[1].ID != "r1" {
		t.Fatalf("requests oldest first = %v %v", all, err)
	}

	sessions := []storage.Session{
		{ID: "s1", User: "alice", Target: "web", Status: storage.SessionRunning, Start: t0},
		{ID: "s2", User: "alice", Target: "db", Status: storage.SessionEnded, Start: t0.Add(time.Nanosecond)},
		{ID: "s3", User: "bob", Target: "web", Status: storage.SessionEnded, Start: t0.Add(-time.Hour)},
	}
	for _, s := range sessions {
		if err := a.PutSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	sessions[0].Status, sessions[0].End = storage.SessionEnded, t0.Add(time.Minute)
	if err := b.PutSession(ctx, sessions[0]); err != nil {
		t.Fatal(err)
	}
	if s1, err := a.Session(ctx, "s1"); err != nil || s1.Status != storage.SessionEnded || !s1.End.Equal(t0.Add(time.Minute)) {
		t.Fatalf("replaced session = %+v %v", s1, err)
	}
	if _, err := a.Session(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing session = %v", err)
	}
	for _, tc := range []struct {
		name string
		f    storage.SessionFilter
		want string
	}{
		{"all oldest first", storage.SessionFilter{}, "s3 s1 s2"},
		{"user", storage.SessionFilter{User: "alice"}, "s1 s2"},
		{"target", storage.SessionFilter{Target: "web"}, "s3 s1"},
		{"status", storage.SessionFilter{Status: storage.SessionEnded, User: "bob"}, "s3"},
		// Since is exact to the nanosecond although columns keep microseconds.
		{"since ns", storage.SessionFilter{Since: t0.Add(time.Nanosecond)}, "s2"},
		{"since", storage.SessionFilter{Since: t0}, "s1 s2"},
		{"none", storage.SessionFilter{User: "zed"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss, err := b.Sessions(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range ss {
				ids = append(ids, s.ID)
			}
			if strings.Join(ids, " ") != tc.want {
				t.Fatalf("sessions = %q, want %q", strings.Join(ids, " "), tc.want)
			}
		})
	}

	if _, err := a.GetKV(ctx, "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing kv = %v", err)
	}
	v, err := a.PutKVIfAbsent(ctx, "k", []byte("one"))
	if err != nil || string(v) != "one" {
		t.Fatal(v, err)
	}
	v, err = b.PutKVIfAbsent(ctx, "k", []byte("two"))
	if err != nil || string(v) != "one" {
		t.Fatalf("PutKVIfAbsent overwrote: %q %v", v, err)
	}
}

func TestKVFirstWriterWinsConcurrently(t *testing.T) {
	_, _, stores := replicas(t, 2)
	ctx := ctxT(t)
	results := make(chan string, 16)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for i, s := range stores {
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := s.PutKVIfAbsent(ctx, "ca_key", []byte(fmt.Sprintf("key-%d-%d", i, g)))
				if err != nil {
					t.Error(err)
				}
				results <- string(v)
			}()
		}
	}
	wg.Wait()
	close(results)
	stored, err := stores[1].GetKV(ctx, "ca_key")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for v := range results {
		n++
		if v != string(stored) {
			t.Fatalf("a writer got %q, the store holds %q", v, stored)
		}
	}
	if n != 16 {
		t.Fatalf("%d results", n)
	}
}

func TestCertsAndRevocations(t *testing.T) {
	_, _, stores := replicas(t, 1)
	s := stores[0]
	ctx := ctxT(t)
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	c7 := storage.CertRecord{Serial: 7, KeyID: "alice/7", User: "alice", Principals: []string{"alice", "root"}, ValidAfter: t0, ValidUntil: t0.Add(time.Hour)}
	if err := s.PutCert(ctx, c7); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCert(ctx, storage.CertRecord{Serial: 8, KeyID: "alice/7x", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCert(ctx, storage.CertRecord{Serial: 9, KeyID: "bob/9", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Cert(ctx, 7)
	if err != nil || got.KeyID != c7.KeyID || len(got.Principals) != 2 || !got.ValidUntil.Equal(c7.ValidUntil) {
		t.Fatalf("cert = %+v %v", got, err)
	}
	if _, err := s.Cert(ctx, 1234); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing cert = %v", err)
	}
	cs, err := s.CertsByKeyID(ctx, "alice/7")
	if err != nil || len(cs) != 1 || cs[0].Serial != 7 {
		t.Fatalf("CertsByKeyID exact match = %v %v", cs, err)
	}
	cs, err = s.CertsByUser(ctx, "alice")
	if err != nil || len(cs) != 2 || cs[0].Serial != 7 || cs[1].Serial != 8 {
		t.Fatalf("CertsByUser = %v %v", cs, err)
	}

	for i, r := range []storage.Revocation{{Serial: 7, By: "admin", At: t0}, {KeyID: "bob/9", By: "admin", Reason: "left", At: t0}} {
		if err := s.AddRevocation(ctx, r); err != nil {
			t.Fatalf("revocation %d: %v", i, err)
		}
	}
	revs, err := s.Revocations(ctx)
	if err != nil || len(revs) != 2 || revs[0].Serial != 7 || revs[1].KeyID != "bob/9" || revs[1].Reason != "left" {
		t.Fatalf("revocations = %+v %v", revs, err)
	}

	// The certificate and its audit event are one transaction: a failing
	// builder leaves neither.
	boom := errors.New("boom")
	if _, err := s.PutCertAudited(ctx, storage.CertRecord{Serial: 20, KeyID: "x", User: "x"}, func(uint64, string) ([]byte, string, error) {
		return nil, "", boom
	}); !errors.Is(err, boom) {
		t.Fatalf("PutCertAudited with failing builder = %v", err)
	}
	if _, err := s.Cert(ctx, 20); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("certificate of a failed audit was stored: %v", err)
	}
	log := audit.New(s, nil, nil)
	ev, err := log.EmitWith(ctx, audit.Event{Type: audit.CertIssued, User: "x"}, func(ctx context.Context, b storage.AuditBuilder) (storage.AuditRecord, error) {
		return s.PutCertAudited(ctx, storage.CertRecord{Serial: 21, KeyID: "x", User: "x"}, b)
	})
	if err != nil || ev.Seq != 1 {
		t.Fatalf("audited cert = %+v %v", ev, err)
	}
	if _, err := s.Cert(ctx, 21); err != nil {
		t.Fatal(err)
	}
	if n, err := audit.Verify(ctx, s); err != nil || n != 1 {
		t.Fatalf("verify = %d %v", n, err)
	}
}

func TestAuditChainLinearAcrossReplicas(t *testing.T) {
	_, _, stores := replicas(t, 2)
	ctx := ctxT(t)
	const perWriter = 25
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for i, s := range stores {
		log := audit.New(s, nil, nil)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < perWriter; n++ {
					var err error
					e := audit.Event{Type: audit.Exec, User: fmt.Sprintf("r%d-g%d", i, g), Details: map[string]any{"n": n}}
					if n%7 == 3 {
						// And batches: consecutive in the one chain.
						evs := []audit.Event{e, e, e}
						if _, err = log.EmitBatch(ctx, evs); err != nil {
							t.Error(err)
							return
						}
						if evs[1].Seq != evs[0].Seq+1 || evs[2].PrevHash != evs[1].Hash {
							t.Errorf("batch not consecutive: %d %d %d", evs[0].Seq, evs[1].Seq, evs[2].Seq)
						}
						continue
					}
					if n%5 == 0 {
						// Mix in certificate issuance, which appends in its own transaction.
						serial, serr := s.NextSerial(ctx)
						if serr != nil {
							t.Error(serr)
							return
						}
						e.Type = audit.CertIssued
						_, err = log.EmitWith(ctx, e, func(ctx context.Context, b storage.AuditBuilder) (storage.AuditRecord, error) {
							return s.PutCertAudited(ctx, storage.CertRecord{Serial: serial, KeyID: e.User, User: e.User}, b)
						})
					} else {
						_, err = log.Emit(ctx, e)
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	batches := 0
	for n := 0; n < perWriter; n++ {
		if n%7 == 3 {
			batches++
		}
	}
	total := 2 * 4 * (perWriter + 2*batches) // a batch is three events
	n, err := audit.Verify(ctx, stores[0])
	if err != nil || n != total {
		t.Fatalf("verify = %d, %v; want %d events in one chain", n, err, total)
	}
	recs, err := stores[1].AuditRange(ctx, uint64(total-1), 0)
	if err != nil || len(recs) != 2 || recs[0].Seq != uint64(total-1) || recs[1].Seq != uint64(total) {
		t.Fatalf("tail = %v %v", recs, err)
	}
	if recs, err := stores[1].AuditRange(ctx, 1, 7); err != nil || len(recs) != 7 || recs[6].Seq != 7 {
		t.Fatalf("limited range = %d records, %v", len(recs), err)
	}
}

func TestPingCorrupt(t *testing.T) {
	srv, dsn, stores := replicas(t, 1)
	ctx := ctxT(t)
	if err := stores[0].Ping(ctx); err != nil {
		t.Fatal(err)
	}
	name := dbName(t, dsn)
	if _, err := srv.SuperSQL(name, "DELETE FROM audit_tip"); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].Ping(ctx); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("ping without tip = %v", err)
	}
	if _, err := stores[0].AppendAudit(ctx, func(uint64, string) ([]byte, string, error) { return []byte("{}"), "h", nil }); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("append without tip = %v", err)
	}
}
