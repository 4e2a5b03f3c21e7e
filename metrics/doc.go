// Package metrics defines jumpgate's Prometheus metrics in one registry and
// implements the small metric interfaces the API, the bastion and the
// forwarders declare. It does not serve HTTP itself beyond returning the
// promhttp handler for /metrics.
package metrics
