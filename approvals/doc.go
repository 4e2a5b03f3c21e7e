// Package approvals is the one queue for everything a human must approve:
// just-in-time access requests and operations held by policy (SSH commands,
// SQL statements, Kubernetes requests). It creates requests, lets a holder
// wait for the decision (woken at once in-process, and by polling storage so
// a decision taken on another replica arrives within seconds), records
// decisions with the rule that nobody approves their own request, expires
// what nobody decided, and audits every step. It does not decide what needs
// approval: policy does.
package approvals
