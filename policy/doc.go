// Package policy is jumpgate's access policy: typed data loaded and validated
// once from YAML (a file with any error is rejected whole, with line
// numbers), and pure evaluation functions that return typed decisions — which
// roles an identity holds, which logins and targets they reach, and whether a
// command is allowed, blocked or held for review. It does no I/O at
// evaluation time and knows nothing about SSH, SQL wire formats or HTTP; the
// forwarders translate their requests into the inputs evaluated here.
package policy
