package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every jumpgate metric.
type Metrics struct {
	Registry       *prometheus.Registry
	certsIssued    prometheus.Counter
	authFailures   *prometheus.CounterVec
	activeSessions *prometheus.GaugeVec
	sessionsTotal  *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	blocked        *prometheus.CounterVec
	held           *prometheus.CounterVec
	recordingWrite prometheus.Histogram
	storageLatency *prometheus.HistogramVec
}

// New registers the metrics in a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		certsIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jumpgate_certificates_issued_total", Help: "User certificates issued."}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jumpgate_auth_failures_total", Help: "Refused authentications by reason."}, []string{"reason"}),
		activeSessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jumpgate_active_sessions", Help: "Sessions running now by kind."}, []string{"kind"}),
		sessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jumpgate_sessions_total", Help: "Sessions started by kind."}, []string{"kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jumpgate_bytes_forwarded_total", Help: "Bytes relayed by kind."}, []string{"kind"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jumpgate_blocked_total", Help: "Operations blocked by policy, by kind."}, []string{"kind"}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jumpgate_held_total", Help: "Operations held for approval, by kind."}, []string{"kind"}),
		recordingWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jumpgate_recording_write_seconds", Help: "Recording write latency.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
		storageLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jumpgate_storage_seconds", Help: "Storage operation latency.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}, []string{"op"}),
	}
	r.MustRegister(m.certsIssued, m.authFailures, m.activeSessions, m.sessionsTotal, m.bytes, m.blocked, m.held, m.recordingWrite, m.storageLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// CertIssued counts an issued certificate.
func (m *Metrics) CertIssued() { m.certsIssued.Inc() }

// AuthFailed counts a refused authentication.
func (m *Metrics) AuthFailed(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

// SessionStarted counts a session start.
func (m *Metrics) SessionStarted(kind string) {
	m.activeSessions.WithLabelValues(kind).Inc()
	m.sessionsTotal.WithLabelValues(kind).Inc()
}

// SessionEnded counts a session end.
func (m *Metrics) SessionEnded(kind string) { m.activeSessions.WithLabelValues(kind).Dec() }

// BytesForwarded adds relayed bytes.
func (m *Metrics) BytesForwarded(kind string, n int64) { m.bytes.WithLabelValues(kind).Add(float64(n)) }

// Blocked counts a blocked operation.
func (m *Metrics) Blocked(kind string) { m.blocked.WithLabelValues(kind).Inc() }

// Held counts a held operation.
func (m *Metrics) Held(kind string) { m.held.WithLabelValues(kind).Inc() }

// RecordingWrite observes a recording write.
func (m *Metrics) RecordingWrite(d time.Duration) { m.recordingWrite.Observe(d.Seconds()) }

// Storage observes a storage operation.
func (m *Metrics) Storage(op string, d time.Duration) {
	m.storageLatency.WithLabelValues(op).Observe(d.Seconds())
}

// Kinds and reasons every family is exported with from the start, so a
// scrape shows each series (at zero) before the first event.
var (
	sessionKinds = []string{"shell", "exec", "sftp", "subsystem", "forward", "postgres", "kubernetes", "kube-exec", "kube-attach"}
	byteKinds    = []string{"ssh", "postgres", "kubernetes"}
	policyKinds  = []string{"command", "sql", "kube"}
	authReasons  = []string{"invalid_token", "no_role", "unknown_ca", "revoked", "expired", "unknown_certificate"}
	storageOps   = []string{"ping", "heartbeat"}
)

// Preset creates the usual series of every labelled family at zero.
func (m *Metrics) Preset() {
	for _, k := range sessionKinds {
		m.activeSessions.WithLabelValues(k)
		m.sessionsTotal.WithLabelValues(k)
	}
	for _, k := range byteKinds {
		m.bytes.WithLabelValues(k)
	}
	for _, k := range policyKinds {
		m.blocked.WithLabelValues(k)
		m.held.WithLabelValues(k)
	}
	for _, r := range authReasons {
		m.authFailures.WithLabelValues(r)
	}
	for _, op := range storageOps {
		m.storageLatency.WithLabelValues(op)
	}
}

// Families are the names /metrics always carries (besides the Go and
// process collectors'); the end-to-end scrape test checks each.
var Families = []string{
	"jumpgate_certificates_issued_total", "jumpgate_auth_failures_total", "jumpgate_active_sessions",
	"jumpgate_sessions_total", "jumpgate_bytes_forwarded_total", "jumpgate_blocked_total", "jumpgate_held_total",
	"jumpgate_recording_write_seconds", "jumpgate_storage_seconds",
}
