package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

func init() {
	register(Benchmark{ID: "3", Rows: []string{"3b", "3c", "3d"}, Title: "connection setup, ssh -J … true", Run: runConnect})
}

// runConnect times `ssh -J … root@target true` end to end (two handshakes,
// two authentications, one exec), Connects times per route, the routes
// taking turns run by run.
func runConnect(ctx context.Context, e *Env) ([]Row, error) {
	ref, pass, rec := e.refRoute(), e.jgRoute(passthroughTarget), e.jgRoute(recordedTarget)
	var refS, passS, recS []float64
	for _, r := range []route{ref, pass, rec} { // warm-up, not counted
		if _, err := e.connectOnce(ctx, r); err != nil {
			return nil, err
		}
	}
	for i := 0; i < e.Flags.Connects; i++ {
		for _, step := range []struct {
			r   route
			out *[]float64
		}{{ref, &refS}, {pass, &passS}, {rec, &recS}} {
			d, err := e.connectOnce(ctx, step.r)
			if err != nil {
				return nil, err
			}
			*step.out = append(*step.out, ms(d))
		}
	}
	method := fmt.Sprintf("`ssh -J … root@target true`, %d runs per route, taking turns", e.Flags.Connects)
	p := func(xs []float64, q float64) []float64 { return []float64{quantile(xs, q)} }
	rows := []Row{
		{ID: "3", Title: "connection setup p50, passthrough target", Unit: "ms", JG: p(passS, .5), Ref: p(refS, .5), RefName: "(OpenSSH -J)",
			Goal: Goal{RatioAtMost, 1.3}, Method: method + fmt.Sprintf("; jumpgate range %s–%s ms, OpenSSH %s–%s ms", rangeOf(passS)[0], rangeOf(passS)[1], rangeOf(refS)[0], rangeOf(refS)[1])},
		{ID: "3b", Title: "connection setup p99, passthrough target", Unit: "ms", JG: p(passS, .99), Ref: p(refS, .99), RefName: "(OpenSSH -J)",
			Goal: Goal{RatioAtMost, 1.3}, Method: method},
		{ID: "3c", Title: "connection setup p50, recorded target (bastion terminates and re-dials)", Unit: "ms", JG: p(recS, .5), Ref: p(refS, .5), RefName: "(OpenSSH -J)",
			Method: method + "; informational, no goal in issue 8"},
		{ID: "3d", Title: "connection setup p99, recorded target", Unit: "ms", JG: p(recS, .99), Ref: p(refS, .99), RefName: "(OpenSSH -J)",
			Method: method + "; informational"},
	}
	return rows, nil
}

func rangeOf(xs []float64) [2]string {
	lo, hi := minMax(xs)
	return [2]string{num(lo), num(hi)}
}

func (e *Env) connectOnce(ctx context.Context, r route) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(e.sshArgs(r), "true")...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("bench: ssh via %s true: %w: %s%s", r.Name, err, out, e.logTail(r))
	}
	return d, nil
}
