package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jumpgate/jumpgate/test/harness"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

func init() {
	register(Benchmark{ID: "7", Rows: []string{"7b", "7c", "7d", "7e"}, Title: "PostgreSQL through the forwarder", Run: runPostgres})
}

// Targets of the PostgreSQL benchmark: the same database twice, once
// reached by a role without masks and once by a role masking three columns.
const (
	pgTarget       = "orders-db"
	pgMaskedTarget = "orders-masked"
)

const pgPolicy = `
roles:
  - name: eng
    groups: [engineering]
    targets: {names: [orders-db, pg-relay]}
  - name: eng-masked
    groups: [engineering]
    targets: {names: [orders-masked]}
    mask:
      columns: ["*.ssn", "*.email", "*.card_number"]
`

// pgRelayTarget is a passthrough SSH target pointed at PostgreSQL (7f).
const pgRelayTarget = "pg-relay"

var notRecorded = false

// pgMaskedScript is the select-heavy script of 7b: one account by key,
// with the three masked columns.
const pgMaskedScript = `\set aid random(1, 100000 * :scale)
SELECT aid, abalance, ssn, email, card_number FROM pgbench_accounts WHERE aid = :aid;
`

// pgBigSelect is the 1,000,000-row SELECT of 7c (scale 10), masked columns included.
const pgBigSelect = "SELECT aid, bid, abalance, ssn, email, card_number FROM pgbench_accounts"

// runPostgres measures the user's path to a database through jumpgate
// (`ssh -L PORT:orders-db:5432 bastion -N`, then pgbench on 127.0.0.1:PORT)
// against an OpenSSH `-L` tunnel through the reference jump sshd straight
// to the same PostgreSQL, rounds interleaved.
func runPostgres(ctx context.Context, e *Env) ([]Row, error) {
	fl := e.Flags
	r7 := Row{ID: "7", Title: "`pgbench -S` through `ssh -L` to the PostgreSQL forwarder", Unit: "tps", RefName: "(OpenSSH -L to PostgreSQL)",
		Goal: Goal{RatioAtLeast, 0.9}}
	r7b := Row{ID: "7b", Title: "pgbench select script with 3 masked columns (policy `mask.columns`)", Unit: "tps", RefName: "(OpenSSH -L, unmasked)",
		Goal: Goal{RatioAtLeast, 0.75}}
	r7c := Row{ID: "7c", Title: "SELECT of 1,000,000 rows (3 masked columns) through the forwarder", Unit: "s", RefName: "(OpenSSH -L, unmasked)"}
	r7d := Row{ID: "7d", Title: "bastion peak RSS during the 1,000,000-row SELECT", Unit: "MB", Goal: Goal{AbsAtMost, 100}}
	r7e := Row{ID: "7e", Title: "bastion peak anonymous RSS (heap, stacks) during the 1,000,000-row SELECT", Unit: "MB"}
	r7f := Row{ID: "7f", Title: "`pgbench -S` through jumpgate's plain relay (a passthrough target at PostgreSQL's port: SSH only, no forwarder)", Unit: "tps",
		RefName: "(OpenSSH -L to PostgreSQL)"}
	rows := func() []Row { return []Row{r7, r7b, r7c, r7d, r7e, r7f} }

	e.Log.Info("starting PostgreSQL and loading pgbench tables", "scale", fl.PgScale)
	pg := pgtest.Start(e.TB, pgtest.Options{})
	pgEnv := []string{"PGPASSWORD=" + pgtest.ScramPassword, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30"}
	if out, err := runCmd(ctx, pgEnv, "pgbench", "-i", "-q", "-s", strconv.Itoa(fl.PgScale), "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", pgtest.ScramUser, pgtest.Database); err != nil {
		return rows(), fmt.Errorf("bench: pgbench -i: %w: %s", err, out)
	}
	if _, err := pg.SuperSQL(pgtest.Database, "ALTER TABLE pgbench_accounts ADD COLUMN ssn text DEFAULT '123-45-6789', "+
		"ADD COLUMN email text DEFAULT 'someone@example.com', ADD COLUMN card_number text DEFAULT '4242424242424242'; VACUUM ANALYZE pgbench_accounts"); err != nil {
		return rows(), fmt.Errorf("bench: add masked columns: %w", err)
	}
	dir := e.TB.TempDir()
	script := filepath.Join(dir, "masked.sql")
	pwFile := filepath.Join(dir, "orders.pw")
	if err := os.WriteFile(script, []byte(pgMaskedScript), 0o644); err != nil {
		return rows(), err
	}
	if err := os.WriteFile(pwFile, []byte(pgtest.ScramPassword+"\n"), 0o600); err != nil {
		return rows(), err
	}
	extra := "    database: " + pgtest.Database + "\n    credentials: {user: " + pgtest.ScramUser + ", password_file: " + pwFile + "}\n    tls: disable\n"
	e.Log.Info("starting a jumpgate server for the PostgreSQL targets")
	fs := e.startFwdServer(pgPolicy, []harness.Target{
		{Name: pgTarget, Kind: "postgres", Address: pg.Addr, Extra: extra},
		{Name: pgMaskedTarget, Kind: "postgres", Address: pg.Addr, Extra: extra},
		{Name: pgRelayTarget, Kind: "ssh", Address: pg.Addr, Record: &notRecorded},
	})
	defer fs.Srv.Proc.Stop(15 * time.Second)
	jg, err := e.openTunnel(ctx, fs.SSHConfig, jgJump, pgTarget+":5432")
	if err != nil {
		return rows(), err
	}
	defer jg.Close()
	jgm, err := e.openTunnel(ctx, fs.SSHConfig, jgJump, pgMaskedTarget+":5432")
	if err != nil {
		return rows(), err
	}
	defer jgm.Close()
	jr, err := e.openTunnel(ctx, fs.SSHConfig, jgJump, pgRelayTarget+":"+strconv.Itoa(pg.Port))
	if err != nil {
		return rows(), err
	}
	defer jr.Close()
	ref, err := e.openTunnel(ctx, e.SSHConfig, refJump, pg.Addr)
	if err != nil {
		return rows(), err
	}
	defer ref.Close()

	// CPU seconds the relaying side (the jumpgate server, or the OpenSSH
	// jump sshd and its per-connection processes) spent per transaction.
	cpuPerTx := map[string][]float64{} // by tunnel port and script
	relayPID := func(t *tunnel) int {
		if t == ref {
			return e.RefJump.PID
		}
		return fs.PID()
	}
	pgb := func(t *tunnel, d time.Duration, args ...string) (float64, error) {
		a := append([]string{"-n", "-c", strconv.Itoa(fl.PgClients), "-j", "2", "-T", strconv.Itoa(int(d.Seconds())),
			"-h", "127.0.0.1", "-p", t.Port(), "-U", pgtest.ScramUser}, args...)
		cpu0 := treeCPU(relayPID(t))
		tps, err := pgbenchTPS(ctx, pgEnv, append(a, pgtest.Database)...)
		if err == nil && tps > 0 {
			key := t.Port() + " " + args[0]
			cpuPerTx[key] = append(cpuPerTx[key], (treeCPU(relayPID(t))-cpu0)/(tps*d.Seconds())*1e6)
		}
		return tps, err
	}
	sArgs, mArgs := []string{"-S"}, []string{"-f", script}
	for _, w := range []struct {
		t    *tunnel
		args []string
	}{{ref, sArgs}, {jg, sArgs}, {ref, mArgs}, {jgm, mArgs}, {jr, sArgs}} { // warm-up, not counted
		if _, err := pgb(w.t, 2*time.Second, w.args...); err != nil {
			return rows(), err
		}
	}
	for i := 0; i < fl.PgRounds; i++ {
		for _, step := range []struct {
			name string
			t    *tunnel
			args []string
			out  *[]float64
		}{
			{"-S OpenSSH -L", ref, sArgs, &r7.Ref}, {"-S jumpgate", jg, sArgs, &r7.JG},
			{"masked script OpenSSH -L", ref, mArgs, &r7b.Ref}, {"masked script jumpgate", jgm, mArgs, &r7b.JG},
			{"-S jumpgate plain relay", jr, sArgs, &r7f.JG},
		} {
			var stopProf func()
			if fl.ProfileDir != "" && i == fl.PgRounds-1 && (step.t == jg || step.t == jgm) {
				stopProf = e.perfPID("pgbench"+strings.ReplaceAll(step.name, " ", "-"), fs.PID())
			}
			tps, err := pgb(step.t, fl.PgTime, step.args...)
			if stopProf != nil {
				stopProf()
			}
			if err != nil {
				return rows(), err
			}
			*step.out = append(*step.out, tps)
			e.Log.Info("pgbench", "route", step.name, "round", i+1, "tps", num(tps))
		}
	}
	pgbMethod := fmt.Sprintf("pgbench -n -c %d -j 2 -T %s on 127.0.0.1:PORT of `ssh -L PORT:%%s:5432 bastion -N` (real OpenSSH client, "+
		"`jumpgate server` process, sql.query audited to bbolt) vs `ssh -L` through the OpenSSH jump sshd to the same PostgreSQL 15; "+
		"%d interleaved rounds after a 2 s warm-up; scale %d", fl.PgClients, fl.PgTime, fl.PgRounds, fl.PgScale)
	cpu := func(t *tunnel, script string) string { return num(median(cpuPerTx[t.Port()+" "+script])) }
	r7.Method = fmt.Sprintf(pgbMethod, pgTarget) + "; built-in select-only script (one `SELECT abalance … WHERE aid = :aid` per transaction); " +
		fmt.Sprintf("relay CPU per transaction (median over the runs, warm-ups included): jumpgate server %s µs, OpenSSH jump sshd %s µs", cpu(jg, "-S"), cpu(ref, "-S"))
	r7f.Ref = r7.Ref
	r7f.Method = fmt.Sprintf("pgbench -n -c %d -j 2 -T %s -S on `ssh -L PORT:%s:%d bastion -N`, a `record: false` SSH target whose address is PostgreSQL's: "+
		"jumpgate only decrypts the channel and relays its bytes (one session.start/end, nothing per statement); reference samples are row 7's; "+
		"relay CPU per transaction: jumpgate server %s µs; informational: separates the SSH layer from the forwarder",
		fl.PgClients, fl.PgTime, pgRelayTarget, pg.Port, cpu(jr, "-S"))
	r7b.Method = fmt.Sprintf(pgbMethod, pgMaskedTarget) + "; `-f` script `SELECT aid, abalance, ssn, email, card_number … WHERE aid = :aid`, " +
		"the role masks `*.ssn`, `*.email`, `*.card_number`; " +
		fmt.Sprintf("relay CPU per transaction: jumpgate server %s µs, OpenSSH jump sshd %s µs", cpu(jgm, "-f"), cpu(ref, "-f"))

	// 7c/7d: one big result, streamed; the peak RSS of the server process
	// (VmHWM, reset before each query) bounds what the forwarder buffers.
	pid := fs.PID()
	baseKB, _ := memKB(pid, "status", "VmRSS")
	baseAnonKB, _ := memKB(pid, "status", "RssAnon")
	baseFileKB, _ := memKB(pid, "status", "RssFile")
	e.Log.Info("server memory before the 1M-row selects", "VmRSS_kB", baseKB, "RssAnon_kB", baseAnonKB, "RssFile_kB", baseFileKB)
	var anonPeaks []float64
	resetOK := true
	for i := 0; i < fl.PgRounds; i++ {
		d, n, err := selectAll(ctx, ref.Addr, pgBigSelect)
		if err != nil {
			return rows(), fmt.Errorf("bench: 1M-row select via OpenSSH -L: %w", err)
		}
		r7c.Ref = append(r7c.Ref, d.Seconds())
		if err := resetPeakRSS(pid); err != nil {
			e.Log.Warn("cannot reset VmHWM; the peak covers the whole run", "err", err)
			resetOK = false
		}
		stopSampling := sampleAnonPeak(pid)
		d, n2, err := selectAll(ctx, jgm.Addr, pgBigSelect)
		anonPeaks = append(anonPeaks, stopSampling())
		if err != nil {
			return rows(), fmt.Errorf("bench: 1M-row select via jumpgate: %w", err)
		}
		if n != n2 {
			return rows(), fmt.Errorf("bench: 1M-row select: %d rows direct, %d through jumpgate", n, n2)
		}
		r7c.JG = append(r7c.JG, d.Seconds())
		mb, err := peakRSSMB(pid)
		if err != nil {
			return rows(), err
		}
		r7d.JG = append(r7d.JG, mb)
		e.Log.Info("1M-row select", "round", i+1, "rows", n, "jumpgate_s", num(d.Seconds()), "ref_s", num(r7c.Ref[len(r7c.Ref)-1]), "peak_rss_MB", num(mb))
	}
	r7c.Method = fmt.Sprintf("`%s` (%d rows × 6 columns) with pgconn (extended protocol) in this process, every row read, "+
		"through `ssh -L` to %s vs `ssh -L` through the OpenSSH jump sshd; %d interleaved rounds; wall time from the query to the last row",
		pgBigSelect, fl.PgScale*100000, pgMaskedTarget, fl.PgRounds)
	hwm := "VmHWM of the `jumpgate server` process, reset (`clear_refs` 5) before each query"
	if !resetOK {
		hwm = "VmHWM of the `jumpgate server` process since it started (reset not permitted)"
	}
	mb := func(kb int64) string { return num(float64(kb) * 1024 / 1e6) }
	r7d.Method = fmt.Sprintf("%s; before the queries (after the pgbench rounds) RSS was %s MB, of which %s MB anonymous (heap, stacks) and %s MB file pages "+
		"(the read-only mmap of the bbolt file holding the audit log, which grows with every audited statement)",
		hwm, mb(baseKB), mb(baseAnonKB), mb(baseFileKB))
	r7e.JG = anonPeaks
	r7e.Method = "RssAnon of the `jumpgate server` process sampled every 5 ms during each query (what the forwarder itself holds, without file pages); informational"
	return rows(), nil
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbenchTPS runs pgbench and returns its TPS without connection time.
func pgbenchTPS(ctx context.Context, env []string, args ...string) (float64, error) {
	out, err := runCmd(ctx, env, "pgbench", args...)
	if err != nil {
		return 0, fmt.Errorf("bench: pgbench %s: %w: %s", harness.Quote(args), err, out)
	}
	m := tpsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("bench: pgbench %s: no tps in output: %s", harness.Quote(args), out)
	}
	return strconv.ParseFloat(m[1], 64)
}

// runCmd runs name with args (env added to ours) and returns its combined output.
func runCmd(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// selectAll runs q on addr and reads every row; it returns the time from
// sending the query to the last row and the row count.
func selectAll(ctx context.Context, addr, q string) (time.Duration, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	host, port, _ := net.SplitHostPort(addr)
	c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable",
		host, port, pgtest.ScramUser, pgtest.ScramPassword, pgtest.Database))
	if err != nil {
		return 0, 0, fmt.Errorf("bench: connect %s: %w", addr, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	start := time.Now()
	rr := c.ExecParams(ctx, q, nil, nil, nil, nil)
	var n int64
	for rr.NextRow() {
		n++
	}
	if _, err := rr.Close(); err != nil {
		return 0, 0, fmt.Errorf("bench: %s: %w", q, err)
	}
	return time.Since(start), n, nil
}
