// Package audit is jumpgate's tamper-evident audit log: typed events appended
// to one SHA-256 hash chain (each event carries the previous event's hash), a
// writer every part of the gate uses, listing with filters, and verification
// that walks the chain and reports the first break. The chain itself is kept
// by a storage backend inside one transaction per event, so concurrent
// writers cannot fork it. It is not a metrics or debug log: those go to slog
// and Prometheus.
package audit
