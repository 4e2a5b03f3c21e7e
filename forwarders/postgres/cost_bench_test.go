package postgres

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

// processCost is what this process has spent so far: CPU time, heap
// allocations and (on Linux) read and write system calls.
type processCost struct {
	cpu, user            time.Duration
	mallocs, bytes       uint64
	readCalls, writeCall uint64
	switches             int64 // voluntary context switches: threads that slept
}

func currentCost(b *testing.B) processCost {
	var c processCost
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	c.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	c.user = time.Duration(ru.Utime.Nano())
	c.switches = ru.Nvcsw
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	c.mallocs, c.bytes = ms.Mallocs, ms.TotalAlloc
	if f, err := os.Open("/proc/self/io"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ": ")
			n, _ := strconv.ParseUint(v, 10, 64)
			switch k {
			case "syscr":
				c.readCalls = n
			case "syscw":
				c.writeCall = n
			}
		}
		f.Close()
	}
	return c
}

// BenchmarkStatementCost runs a fixed number of pgbench transactions (4
// clients) through each configuration and reports what this process spent
// per statement: CPU time (all and user), heap allocations and bytes, read
// and write system calls, and voluntary context switches (a thread of this
// process went to sleep: the cost of waking goroutines). Unlike TPS on a shared machine, these do not depend on
// what else runs; the relay row is the floor any relay pays. Only the
// forwarder (or the relay) runs in this process: pgbench and PostgreSQL
// are other processes.
func BenchmarkStatementCost(b *testing.B) {
	rig := newPgbenchRig(b)
	script, plain, bolt, masked, tunnel := rig.script, rig.plain, rig.bolt, rig.masked, rig.tunnel
	const clients, perClient = 4, 5000
	runs := []struct {
		name string
		addr string
		args []string
	}{
		{"relay-S", tunnel, []string{"-S"}},
		{"jumpgate-S", plain, []string{"-S"}},
		{"jumpgate-bolt-S", bolt, []string{"-S"}},
		{"jumpgate-S-extended", plain, []string{"-S", "-M", "extended"}},
		{"jumpgate-S-prepared", plain, []string{"-S", "-M", "prepared"}},
		{"relay-M", tunnel, []string{"-f", script}},
		{"jumpgate-M", masked, []string{"-f", script}},
		{"jumpgate-M-prepared", masked, []string{"-f", script, "-M", "prepared"}},
	}
	for _, run := range runs {
		b.Run(run.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				host, port, _ := strings.Cut(run.addr, ":")
				args := append([]string{"-h", host, "-p", port, "-U", pgtest.TrustUser, "-n", "-t", strconv.Itoa(perClient), "-c", strconv.Itoa(clients), "-j", "2"}, run.args...)
				args = append(args, pgtest.Database)
				runtime.GC()
				before := currentCost(b)
				if out, err := exec.Command("/usr/bin/pgbench", args...).CombinedOutput(); err != nil {
					b.Fatalf("pgbench: %v: %s", err, out)
				}
				after := currentCost(b)
				n := float64(clients * perClient)
				b.ReportMetric(float64(after.cpu-before.cpu)/float64(time.Microsecond)/n, "cpu-us/stmt")
				b.ReportMetric(float64(after.user-before.user)/float64(time.Microsecond)/n, "user-us/stmt")
				b.ReportMetric(float64(after.mallocs-before.mallocs)/n, "allocs/stmt")
				b.ReportMetric(float64(after.bytes-before.bytes)/n, "B/stmt")
				b.ReportMetric(float64(after.readCalls-before.readCalls)/n, "reads/stmt")
				b.ReportMetric(float64(after.writeCall-before.writeCall)/n, "writes/stmt")
				b.ReportMetric(float64(after.switches-before.switches)/n, "sleeps/stmt")
			}
		})
	}
}
