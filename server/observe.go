package server

import (
	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/metrics"
)

// countPolicyEvents feeds the blocked and held counters of the forwarders
// from the audit log (the bastion counts its own command blocks and holds
// directly): sql.blocked, sql.held, kube.blocked and held Kubernetes
// requests.
func countPolicyEvents(m *metrics.Metrics) func(audit.Event) {
	return func(e audit.Event) {
		switch e.Type {
		case audit.SQLBlocked:
			m.Blocked("sql")
		case audit.SQLHeld:
			m.Held("sql")
		case audit.KubeBlocked:
			m.Blocked("kube")
		case audit.RequestCreated:
			if k, _ := e.Details["kind"].(string); k == "kube" {
				m.Held("kube")
			}
		}
	}
}
