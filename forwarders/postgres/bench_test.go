package postgres

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+)`)

func pgbench(b *testing.B, addr string, args ...string) float64 {
	host, port, _ := strings.Cut(addr, ":")
	all := append([]string{"-h", host, "-p", port, "-U", pgtest.TrustUser, "-n", "-T", "5", "-c", "4", "-j", "2"}, args...)
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

// BenchmarkPgbench reports pgbench TPS through the forwarder relative to a
// direct connection measured in the same run.
func BenchmarkPgbench(b *testing.B) {
	pg := pgtest.Start(b, pgtest.Options{})
	if out, err := exec.Command("/usr/bin/pgbench", "-i", "-s", "2", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", pgtest.TrustUser, pgtest.Database).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v %s", err, out)
	}
	pg.MustSQL(b, "ALTER TABLE pgbench_accounts ADD COLUMN ssn text DEFAULT '123-45-6789', ADD COLUMN email text DEFAULT 'a@b.example', ADD COLUMN card_number text DEFAULT '4242424242424242'")
	script := filepath.Join(b.TempDir(), "masked.sql")
	os.WriteFile(script, []byte("\\set aid random(1, 200000)\nSELECT aid, ssn, email, card_number FROM pgbench_accounts WHERE aid = :aid;\n"), 0o644)
	p, _ := policy.Parse([]byte(testPolicy))
	tgt := config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database, Credentials: config.Credentials{User: pgtest.TrustUser}, TLS: "disable"}
	plain := serve(b, New(Config{Policy: policy.Static(p), Audit: nopAudit{}}), sessionFor("plain"), tgt)
	masked := serve(b, New(Config{Policy: policy.Static(p), Audit: nopAudit{}}), sessionFor("dba"), tgt)
	for i := 0; i < b.N; i++ {
		direct := pgbench(b, pg.Addr, "-S")
		via := pgbench(b, plain, "-S")
		directM := pgbench(b, pg.Addr, "-f", script)
		viaM := pgbench(b, masked, "-f", script)
		b.ReportMetric(direct, "direct-tps")
		b.ReportMetric(via, "jumpgate-tps")
		b.ReportMetric(via/direct, "ratio-S")
		b.ReportMetric(viaM/directM, "ratio-masked")
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
