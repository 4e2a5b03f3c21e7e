// Package bastion is jumpgate's SSH ingress. It authenticates users by
// jumpgate user certificates only, resolves direct-tcpip channels through the
// target inventory (never an open relay), and for each target kind either
// relays bytes (passthrough SSH), terminates the inner SSH session to record
// and filter it before connecting upstream with a freshly minted certificate
// (recorded SSH and local targets), or hands the channel to a protocol
// forwarder (PostgreSQL, Kubernetes). Lifetimes are layered server →
// connection → channel → session, each owning and joining its goroutines.
// It does not sign certificates, parse policy or write recordings itself:
// it uses packages ca, policy and recorder for that.
package bastion
