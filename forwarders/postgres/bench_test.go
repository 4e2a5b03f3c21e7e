package postgres

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage/boltstore"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+)`)

// pgbenchSeconds is the length of one pgbench run (JG_PGBENCH_SECONDS).
func pgbenchSeconds() string {
	if v := os.Getenv("JG_PGBENCH_SECONDS"); v != "" {
		return v
	}
	return "5"
}

func pgbench(b *testing.B, addr string, args ...string) float64 {
	host, port, _ := strings.Cut(addr, ":")
	all := append([]string{"-h", host, "-p", port, "-U", pgtest.TrustUser, "-n", "-T", pgbenchSeconds(), "-c", "4", "-j", "2"}, args...)
	all = append(all, pgtest.Database)
	out, err := exec.Command("/usr/bin/pgbench", all...).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v: %s", err, out)
	}
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		b.Fatalf("pgbench output: %s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// onlyReadWrite hides io.ReaderFrom/io.WriterTo so io.Copy moves bytes
// through a user-space buffer (read, then write), as an ssh -L tunnel
// does, rather than with splice(2).
type onlyReadWrite struct{ io.ReadWriter }

// relay is a plain TCP relay to addr (a goroutine pair copying bytes per
// connection). It stands in for the transport cost of an OpenSSH -L tunnel
// without its encryption; the real OpenSSH comparison is make bench.
func relay(b *testing.B, addr string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(onlyReadWrite{u}, onlyReadWrite{c})
				u.(*net.TCPConn).CloseWrite()
			}()
			go func() {
				defer wg.Done()
				_, _ = io.Copy(onlyReadWrite{c}, onlyReadWrite{u})
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	b.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkPgbench reports pgbench TPS (4 clients) directly, through a
// plain TCP relay (the reference: what an ssh -L tunnel costs at least) and
// through the forwarder, for pgbench -S and for a select script whose 3
// columns are masked. Each round runs every configuration once,
// interleaved; the metrics are medians over JG_BENCH_ROUNDS rounds
// (default 3). The "bolt" configuration writes sql.query events to a real
// boltstore audit log; the others to an in-memory sink.
func BenchmarkPgbench(b *testing.B) {
	rig := newPgbenchRig(b)
	pg, script, plain, bolt, masked, tunnel := rig.pg, rig.script, rig.plain, rig.bolt, rig.masked, rig.tunnel
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("JG_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	runs := []struct {
		name string
		addr string
		args []string
	}{
		{"S-direct", pg.Addr, []string{"-S"}},
		{"S-relay", tunnel, []string{"-S"}},
		{"S-jumpgate", plain, []string{"-S"}},
		{"S-jumpgate-bolt", bolt, []string{"-S"}},
		{"M-direct", pg.Addr, []string{"-f", script}},
		{"M-relay", tunnel, []string{"-f", script}},
		{"M-jumpgate", masked, []string{"-f", script}},
	}
	for i := 0; i < b.N; i++ {
		tps := map[string][]float64{}
		for r := 0; r < rounds; r++ {
			for _, run := range runs {
				v := pgbench(b, run.addr, run.args...)
				tps[run.name] = append(tps[run.name], v)
				b.Logf("round %d %-16s %8.0f tps", r, run.name, v)
			}
		}
		for _, run := range runs {
			b.ReportMetric(median(tps[run.name]), run.name+"-tps")
		}
		m := func(n string) float64 { return median(tps[n]) }
		b.ReportMetric(m("S-jumpgate")/m("S-direct"), "S-vs-direct")
		b.ReportMetric(m("S-jumpgate")/m("S-relay"), "S-vs-relay")
		b.ReportMetric(m("S-jumpgate-bolt")/m("S-relay"), "S-bolt-vs-relay")
		b.ReportMetric(m("M-jumpgate")/m("M-direct"), "M-vs-direct")
		b.ReportMetric(m("M-jumpgate")/m("M-relay"), "M-vs-relay")
	}
}

// BenchmarkMillionRows streams a 1,000,000-row SELECT through the
// forwarder (with masking) and reports the heap peak and throughput ratio.
func BenchmarkMillionRows(b *testing.B) {
	pg := pgtest.Start(b, pgtest.Options{})
	p, _ := policy.Parse([]byte(testPolicy))
	tgt := config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database, Credentials: config.Credentials{User: pgtest.TrustUser}, TLS: "disable"}
	addr := serve(b, New(Config{Policy: policy.Static(p), Audit: nopAudit{}}), sessionFor("dba"), tgt)
	q := "SELECT g, 'user' || g || '@example.com' AS email, '4242424242424242' AS card_number FROM generate_series(1, 1000000) g"
	run := func(a string) (time.Duration, int64) {
		host, port, _ := strings.Cut(a, ":")
		ctx := context.Background()
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", host, port, pgtest.TrustUser, pgtest.Database))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(ctx)
		start := time.Now()
		rr := c.ExecParams(ctx, q, nil, nil, nil, nil)
		var n int64
		for rr.NextRow() {
			n++
		}
		if _, err := rr.Close(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), n
	}
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var peak uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ms runtime.MemStats
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak {
						peak = ms.HeapInuse
					}
				}
			}
		}()
		dd, _ := run(pg.Addr)
		vd, n := run(addr)
		close(stop)
		wg.Wait()
		if n != 1000000 {
			b.Fatalf("rows %d", n)
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(dd)/float64(vd), "throughput-ratio")
		b.ReportMetric(vd.Seconds(), "jumpgate-s")
	}
}

// pgbenchRig is what the pgbench benchmarks drive: a PostgreSQL with the
// pgbench tables (plus three columns to mask), a select script over them,
// the forwarder three ways (no masks, audited to bbolt, masked) and a
// plain TCP relay as the reference.
type pgbenchRig struct {
	pg                          *pgtest.Server
	script                      string
	plain, bolt, masked, tunnel string
}

func newPgbenchRig(b *testing.B) pgbenchRig {
	b.Helper()
	pg := pgtest.Start(b, pgtest.Options{})
	if out, err := exec.Command("/usr/bin/pgbench", "-i", "-s", "2", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", pgtest.TrustUser, pgtest.Database).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v %s", err, out)
	}
	pg.MustSQL(b, "ALTER TABLE pgbench_accounts ADD COLUMN ssn text DEFAULT '123-45-6789', ADD COLUMN email text DEFAULT 'a@b.example', ADD COLUMN card_number text DEFAULT '4242424242424242'")
	script := filepath.Join(b.TempDir(), "masked.sql")
	if err := os.WriteFile(script, []byte("\\set aid random(1, 200000)\nSELECT aid, ssn, email, card_number FROM pgbench_accounts WHERE aid = :aid;\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		b.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	tgt := config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database, Credentials: config.Credentials{User: pgtest.TrustUser}, TLS: "disable"}
	return pgbenchRig{
		pg:     pg,
		script: script,
		plain:  serve(b, New(Config{Policy: policy.Static(p), Audit: nopAudit{}}), sessionFor("plain"), tgt),
		bolt:   serve(b, New(Config{Policy: policy.Static(p), Audit: audit.New(st, nil, slog.Default())}), sessionFor("plain"), tgt),
		masked: serve(b, New(Config{Policy: policy.Static(p), Audit: nopAudit{}}), sessionFor("dba"), tgt),
		tunnel: relay(b, pg.Addr),
	}
}
