package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

func init() {
	register(Benchmark{ID: "1", Rows: []string{"2"}, Title: "bulk transfer through ssh -J", Run: runTransfer})
}

// runTransfer sends Size bytes of zeros through `ssh -J … 'cat > /dev/null'`
// over three routes per round, in turn: the OpenSSH jump host, jumpgate to
// the passthrough entry and jumpgate to the recorded entry of the target.
func runTransfer(ctx context.Context, e *Env) ([]Row, error) {
	ref, pass, rec := e.refRoute(), e.jgRoute(passthroughTarget), e.jgRoute(recordedTarget)
	size := e.Flags.Size
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	method := fmt.Sprintf("`head -c %s /dev/zero \\| ssh -J … 'cat >/dev/null'`, wall time → MB/s (10⁶ B/s)", humanBytes(size))
	r1 := Row{ID: "1", Title: humanBytes(size) + " through `ssh -J`, passthrough target (`record: false`)", Unit: "MB/s",
		RefName: "(OpenSSH -J)", Goal: Goal{RatioAtLeast, 0.95}, Method: method}
	r2 := Row{ID: "2", Title: humanBytes(size) + " through `ssh -J`, recorded target (`record: true`)", Unit: "MB/s",
		RefName: "(OpenSSH -J)", Goal: Goal{RatioAtLeast, 0.7}, Method: method + "; same reference samples as row 1"}
	// A warm-up of each route (not counted): page cache, first-connection costs.
	for _, r := range []route{ref, pass, rec} {
		if _, err := e.transfer(ctx, r, 16<<20); err != nil {
			return []Row{r1, r2}, err
		}
	}
	for i := 0; i < e.Flags.Rounds; i++ {
		for _, step := range []struct {
			r   route
			out *[]float64
		}{{ref, &r1.Ref}, {pass, &r1.JG}, {rec, &r2.JG}} {
			var stopProf func()
			if e.Flags.ProfileDir != "" && i == e.Flags.Rounds-1 && step.r.Jump == jgJump {
				stopProf = e.perfServer("transfer-" + step.r.Dest)
			}
			d, err := e.transfer(ctx, step.r, size)
			if stopProf != nil {
				stopProf()
			}
			if err != nil {
				return []Row{r1, r2}, err
			}
			*step.out = append(*step.out, mbps(d))
			e.Log.Info("transfer", "route", step.r.Name, "round", i+1, "MB/s", num(mbps(d)))
		}
	}
	r2.Ref = r1.Ref
	return []Row{r1, r2}, nil
}

// transfer times one `head -c n /dev/zero | ssh -J … 'cat > /dev/null'`.
func (e *Env) transfer(ctx context.Context, r route, n int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	head := exec.CommandContext(ctx, "head", "-c", fmt.Sprint(n), "/dev/zero")
	ssh := exec.CommandContext(ctx, "ssh", append(e.sshArgs(r), "cat > /dev/null")...)
	pipe, err := head.StdoutPipe()
	if err != nil {
		return 0, err
	}
	ssh.Stdin = pipe
	var out strings.Builder
	ssh.Stdout, ssh.Stderr = &out, &out
	start := time.Now()
	if err := head.Start(); err != nil {
		return 0, err
	}
	if err := ssh.Run(); err != nil {
		_ = head.Process.Kill()
		_ = head.Wait()
		return 0, fmt.Errorf("bench: ssh via %s: %w: %s%s", r.Name, err, out.String(), e.logTail(r))
	}
	d := time.Since(start)
	if err := head.Wait(); err != nil {
		return 0, fmt.Errorf("bench: head: %w", err)
	}
	return d, nil
}
