package test

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/metrics"
	"github.com/jumpgate/jumpgate/test/harness"
)

// scrape returns the /metrics page of s.
func scrape(t *testing.T, s *harness.Server) string {
	t.Helper()
	resp, err := harness.TLSClient(t, s.CAFile).Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// checkMetrics fails unless the page carries every jumpgate family.
func checkMetrics(t *testing.T, page string) {
	t.Helper()
	for _, f := range metrics.Families {
		if !strings.Contains(page, "# TYPE "+f+" ") {
			t.Errorf("/metrics lacks %s", f)
		}
	}
}

// TestMetricsAndSIGHUP scrapes /metrics of a running server after a recorded
// session (every family present, sessions, certificates, recording writes
// and storage latency counted), then relabels a target in the config file
// and sends SIGHUP: the change is in force without a restart.
func TestMetricsAndSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	env := startBastionEnv(t)
	ctx := ctxT(t, 90*time.Second)
	if out, err := env.alice.SSH(ctx, "root", "web-1", "echo metered"); err != nil || !strings.Contains(out, "metered") {
		t.Fatalf("ssh: %v %q", err, out)
	}
	page := scrape(t, env.srv)
	checkMetrics(t, page)
	for _, want := range []string{
		"jumpgate_certificates_issued_total 2", // alice and dave logged in
		`jumpgate_sessions_total{kind="exec"} 1`,
		`jumpgate_active_sessions{kind="shell"} 0`,
		`jumpgate_blocked_total{kind="sql"} 0`,
		`jumpgate_storage_seconds_count{op="ping"}`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(page, "jumpgate_recording_write_seconds_count 0\n") {
		t.Error("the recorded session observed no recording write")
	}

	// SIGHUP: prod-1 relabelled env: test in the config file is open to
	// alice (role eng) at once, without a restart.
	if out, err := env.alice.SSH(ctx, "root", "prod-1", "true"); err == nil {
		t.Fatalf("prod-1 reachable for alice before the change: %q", out)
	}
	cfg, err := os.ReadFile(env.srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(cfg), "labels: {env: prod}", "labels: {env: test}", 1)
	if changed == string(cfg) {
		t.Fatalf("no prod label in the config:\n%s", cfg)
	}
	if err := os.WriteFile(env.srv.ConfigFile, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(env.srv.Proc.Cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 10*time.Second, "the SIGHUP reload", func() bool {
		return strings.Contains(env.srv.Proc.Out.String(), "SIGHUP: targets reloaded")
	})
	if out, err := env.alice.SSH(ctx, "root", "prod-1", "echo prod-1-after-sighup"); err != nil || !strings.Contains(out, "prod-1-after-sighup") {
		t.Fatalf("prod-1 after SIGHUP: %v %q", err, out)
	}
}
