package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jumpgate/jumpgate/test/harness"
)

// Flags are the knobs of a run; defaults are the sizes of issue 8.
type Flags struct {
	Size          int64
	Rounds        int
	Connects      int
	Sessions      int
	SessionRounds int
	Echo          int
	Certs         int
	CertRounds    int
	Workers       int
	CatSize       int64
	PgTime        time.Duration
	PgClients     int
	PgRounds      int
	PgScale       int
	KubeGets      int
	KubeRounds    int
	Kubectls      int
	Out           string
	Only          string
	ProfileDir    string
	Verbose       bool
	Hold          bool
}

type byteSize struct{ p *int64 }

func (b byteSize) String() string {
	if b.p == nil {
		return ""
	}
	return strconv.FormatInt(*b.p, 10)
}

func (b byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b.p = n
	return nil
}

// parseSize reads 1G, 200M, 64k or plain bytes (binary multiples).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bench: bad size %q", s)
	}
	return n * mult, nil
}

func parseFlags() *Flags {
	f := &Flags{Size: 1 << 30, CatSize: 200 << 20}
	flag.Var(byteSize{&f.Size}, "size", "bytes sent through ssh -J per transfer (benchmarks 1 and 2), e.g. 1G, 256M")
	flag.IntVar(&f.Rounds, "rounds", 3, "interleaved rounds of the transfer benchmarks (1, 2, 6)")
	flag.IntVar(&f.Connects, "connects", 100, "ssh -J … true runs per side (benchmark 3)")
	flag.IntVar(&f.Sessions, "sessions", 1000, "concurrent idle recorded sessions (benchmark 4)")
	flag.IntVar(&f.SessionRounds, "session-rounds", 1, "interleaved rounds of benchmark 4")
	flag.IntVar(&f.Echo, "echo", 200, "keystroke echo samples per side (benchmark 4)")
	flag.IntVar(&f.Certs, "certs", 4000, "certificates issued per round (benchmark 5)")
	flag.IntVar(&f.CertRounds, "cert-rounds", 5, "interleaved rounds of benchmark 5")
	flag.IntVar(&f.Workers, "workers", 16, "concurrent certificate requests (benchmark 5)")
	flag.Var(byteSize{&f.CatSize}, "cat-size", "file size cat'ed in a pty (benchmark 6)")
	flag.DurationVar(&f.PgTime, "pg-time", 10*time.Second, "length of each pgbench run (benchmark 7)")
	flag.IntVar(&f.PgClients, "pg-clients", 4, "pgbench clients, -c (benchmark 7)")
	flag.IntVar(&f.PgRounds, "pg-rounds", 3, "interleaved rounds of benchmark 7")
	flag.IntVar(&f.PgScale, "pg-scale", 10, "pgbench scale (100,000 accounts each; 10 gives the 1,000,000-row SELECT of 7c)")
	flag.IntVar(&f.KubeGets, "kube-gets", 200, "GET requests per side per round (benchmark 8)")
	flag.IntVar(&f.KubeRounds, "kube-rounds", 5, "interleaved rounds of benchmark 8")
	flag.IntVar(&f.Kubectls, "kubectls", 20, "kubectl get pods runs per side (benchmark 8)")
	flag.StringVar(&f.Out, "out", "bench/RESULTS.md", "file whose table section is replaced (empty: none)")
	flag.StringVar(&f.Only, "only", "", "comma-separated benchmark IDs (or pg, kube) to run (default all); with -out, their rows are merged into the table there")
	flag.StringVar(&f.ProfileDir, "profile", "", "directory for CPU profiles (perf of the server during 1, 2, 6, 7, 8; pprof of 5)")
	flag.BoolVar(&f.Verbose, "v", false, "debug logging")
	flag.BoolVar(&f.Hold, "hold", false, "set up, print how to reach the routes, and wait for Ctrl-C (for profiling by hand)")
	flag.Parse()
	return f
}

func main() {
	fl := parseFlags()
	level := slog.LevelInfo
	if fl.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	os.Exit(run(fl, log))
}

func run(fl *Flags, log *slog.Logger) (code int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	raiseNoFile(log)
	tb := newProgramTB(log)
	defer harness.Cleanup()
	defer tb.runCleanups()
	slices.SortStableFunc(registry, func(a, b Benchmark) int { return compareID(a.ID, b.ID) })
	start := time.Now()
	var env *Env
	if err := catch(func() { env = setupEnv(ctx, tb, log, fl) }); err != nil {
		log.Error("setup failed", "err", err)
		return 1
	}
	log.Info("setup done", "took", time.Since(start).Round(time.Millisecond))
	if fl.Hold {
		fmt.Printf("ssh -F %s -J %s root@%s   # jumpgate, recorded\n", env.SSHConfig, jgJump, recordedTarget)
		fmt.Printf("ssh -F %s -J %s root@%s   # jumpgate, passthrough\n", env.SSHConfig, jgJump, passthroughTarget)
		fmt.Printf("ssh -F %s -J %s root@%s   # OpenSSH jump host\n", env.SSHConfig, refJump, refDest)
		fmt.Printf("jumpgate server pid %d, OpenSSH jump sshd pid %d, target sshd pid %d\n", env.Server.Proc.Cmd.Process.Pid, env.RefJump.PID, env.Target.PID)
		<-ctx.Done()
		return 0
	}

	var rows []Row
	for _, b := range registry {
		if !slices.ContainsFunc(append([]string{b.ID}, b.Rows...), func(id string) bool { return selected(fl.Only, id) }) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		log.Info("running", "id", b.ID, "benchmark", b.Title)
		t0 := time.Now()
		var got []Row
		var err error
		if cerr := catch(func() { got, err = b.Run(ctx, env) }); cerr != nil {
			err = cerr
		}
		if err != nil {
			log.Error("benchmark failed", "id", b.ID, "err", err)
			if len(got) == 0 {
				got = []Row{{ID: b.ID, Title: b.Title}}
			}
			for i := range got {
				if got[i].Err == nil && len(got[i].JG) == 0 {
					got[i].Err = err
				}
			}
		}
		log.Info("done", "id", b.ID, "took", time.Since(t0).Round(time.Millisecond))
		rows = append(rows, got...)
	}
	for _, p := range planned {
		if !selected(fl.Only, p.ID) || slices.ContainsFunc(registry, func(b Benchmark) bool { return b.has(p.ID) }) {
			continue
		}
		rows = append(rows, Row{ID: p.ID, Title: p.Title, NotMeasured: true, Method: p.Goal})
	}
	slices.SortStableFunc(rows, func(a, b Row) int { return compareID(a.ID, b.ID) })
	table := renderTable(fl, rows, time.Since(start))
	fmt.Print(table)
	if fl.Out != "" && fl.Only != "" && ctx.Err() == nil {
		// A partial run replaces its own rows in the table and keeps the rest.
		table, err := mergeResults(fl.Out, fl, rows, time.Since(start))
		if err == nil {
			err = writeResults(fl.Out, table)
		}
		if err != nil {
			log.Error("cannot merge results", "file", fl.Out, "err", err)
		} else {
			log.Info("rows merged into the table", "file", fl.Out, "only", fl.Only)
		}
	}
	if fl.Out != "" && fl.Only == "" && ctx.Err() == nil {
		if err := writeResults(fl.Out, table); err != nil {
			log.Error("cannot write results", "file", fl.Out, "err", err)
		} else {
			log.Info("table written", "file", fl.Out)
		}
	}
	return 0
}

// onlyAliases name benchmarks for -only besides their numbers.
var onlyAliases = map[string]string{"pg": "7", "postgres": "7", "kube": "8", "k8s": "8"}

func selected(only, id string) bool {
	if only == "" {
		return true
	}
	for _, s := range strings.Split(only, ",") {
		s = strings.TrimSpace(s)
		if a, ok := onlyAliases[s]; ok {
			s = a
		}
		if s == id || s == idPrefix(id) {
			return true
		}
	}
	return false
}

// idPrefix is the number of an ID ("4" of "4b").
func idPrefix(id string) string { return strings.TrimRight(id, "abcdefghijklmnopqrstuvwxyz") }

func compareID(a, b string) int {
	na, _ := strconv.Atoi(idPrefix(a))
	nb, _ := strconv.Atoi(idPrefix(b))
	if na != nb {
		return na - nb
	}
	return strings.Compare(a, b)
}

// raiseNoFile lifts RLIMIT_NOFILE to its hard limit; the processes this
// program starts inherit it.
func raiseNoFile(log *slog.Logger) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			log.Warn("cannot raise RLIMIT_NOFILE", "err", err)
		}
	}
	log.Debug("RLIMIT_NOFILE", "cur", l.Cur)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func opensshVersion() string {
	out, err := exec.Command("ssh", "-V").CombinedOutput()
	if err != nil {
		return "unknown"
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), ",")
	return v
}

func renderTable(fl *Flags, rows []Row, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## jumpgate benchmarks — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "CPU: **%s**, **%d cores** (GOMAXPROCS %d) · %s · %s · %s/%s · run took %s\n\n",
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), opensshVersion(), runtime.GOOS, runtime.GOARCH, took.Round(time.Second))
	fmt.Fprintf(&b, "Flags: `-size %s -rounds %d -connects %d -sessions %d -session-rounds %d -echo %d -certs %d -cert-rounds %d -workers %d -cat-size %s`. "+
		"Every hop uses cipher `%s` and kex `%s` (client's choice, same for both sides). "+
		"Reference = stock OpenSSH `sshd` (AllowTcpForwarding yes) as the `-J` jump host in front of the same target sshd. "+
		"Cells: median (min–max) over interleaved rounds; ratio = jumpgate ÷ reference of the medians.\n\n",
		humanBytes(fl.Size), fl.Rounds, fl.Connects, fl.Sessions, fl.SessionRounds, fl.Echo, fl.Certs, fl.CertRounds, fl.Workers, humanBytes(fl.CatSize), benchCipher, benchKex)
	b.WriteString("| # | benchmark | jumpgate | reference | ratio | goal | met | method |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		switch {
		case r.NotMeasured:
			fmt.Fprintf(&b, "| %s | %s | not measured in this build | | | %s | — | |\n", r.ID, r.Title, r.Method)
		case r.Err != nil:
			fmt.Fprintf(&b, "| %s | %s | error: %s | | | %s | — | %s |\n", r.ID, r.Title, cell(r.Err.Error()), r.GoalText(), r.Method)
		case len(r.Ref) == 0:
			fmt.Fprintf(&b, "| %s | %s | %s | – | – | %s | %s | %s |\n", r.ID, r.Title, cellStats(r.JG, r.Unit), r.GoalText(), r.Met(), r.Method)
		default:
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s× | %s | %s | %s |\n", r.ID, r.Title, cellStats(r.JG, r.Unit),
				cellStats(r.Ref, r.Unit)+" "+r.RefName, num(r.Ratio()), r.GoalText(), r.Met(), r.Method)
		}
	}
	b.WriteString("\n")
	return b.String()
}

// mergeResults renders the table of a partial (-only) run into the table
// already in file: rows the run selected are replaced (or added), every
// other row and the header of the earlier full run stay, and a line under
// the header says which rows were measured when and with which flags.
func mergeResults(file string, fl *Flags, rows []Row, took time.Duration) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("bench: read %s: %w", file, err)
	}
	s := string(b)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	if i < 0 || j <= i {
		return renderTable(fl, rows, took), nil // nothing to merge into
	}
	old := strings.Split(strings.TrimSpace(s[i+len(beginMark):j]), "\n")
	fresh := strings.Split(strings.TrimSpace(renderTable(fl, rows, took)), "\n")
	isRow := func(l string) bool {
		return strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| # |")
	}
	rowID := func(l string) string {
		f := strings.Split(l, "|")
		if len(f) < 2 {
			return ""
		}
		return strings.TrimSpace(f[1])
	}
	note := fmt.Sprintf("Rows %s re-measured %s by `go run ./bench -only %s` (run took %s); the other rows are from the run above.",
		rowIDs(rows), time.Now().UTC().Format("2006-01-02 15:04 UTC"), fl.Only, took.Round(time.Second))
	notePrefix := "Rows "
	var head, table []string
	var tableRows []string
	for _, l := range old {
		switch {
		case isRow(l):
			if !selected(fl.Only, rowID(l)) {
				tableRows = append(tableRows, l)
			}
		case strings.HasPrefix(l, "| # |") || strings.HasPrefix(l, "|---"):
			table = append(table, l)
		case strings.HasPrefix(l, notePrefix) && strings.Contains(l, "`go run ./bench -only "+fl.Only+"`"):
			// an earlier partial run of the same rows: replaced below
		default:
			head = append(head, l)
		}
	}
	for _, l := range fresh {
		if isRow(l) {
			tableRows = append(tableRows, l)
		}
	}
	slices.SortStableFunc(tableRows, func(a, b string) int { return compareID(rowID(a), rowID(b)) })
	head = slices.CompactFunc(head, func(a, b string) bool { return a == "" && b == "" })
	for len(head) > 0 && head[len(head)-1] == "" {
		head = head[:len(head)-1]
	}
	out := strings.Join(head, "\n") + "\n\n" + note + "\n\n" + strings.Join(table, "\n") + "\n" + strings.Join(tableRows, "\n") + "\n\n"
	return out, nil
}

func rowIDs(rows []Row) string {
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ", ")
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", "/")
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func cellStats(xs []float64, unit string) string {
	if len(xs) == 0 {
		return "–"
	}
	lo, hi := minMax(xs)
	if len(xs) == 1 {
		return fmt.Sprintf("%s %s", num(xs[0]), unit)
	}
	return fmt.Sprintf("%s %s (%s–%s)", num(median(xs)), unit, num(lo), num(hi))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

const (
	beginMark = "<!-- bench:table:begin (written by go run ./bench) -->"
	endMark   = "<!-- bench:table:end -->"
)

// writeResults puts table between the markers of file, keeping everything
// else; a file without markers gets them at the top.
func writeResults(file, table string) error {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	section := beginMark + "\n" + table + endMark + "\n"
	s := string(old)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + section + strings.TrimPrefix(s[j+len(endMark):], "\n")
	case s == "":
		s = "# jumpgate benchmark results\n\nRegenerate with `make bench`. The table is rewritten by each run; the analysis below it is kept.\n\n" + section
	default:
		s = section + "\n" + s
	}
	return os.WriteFile(file, []byte(s), 0o644)
}
