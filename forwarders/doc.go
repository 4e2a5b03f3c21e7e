// Package forwarders holds what the bastion and its protocol-aware
// forwarders share: the description of the authenticated session that owns
// a channel and the interface a forwarder implements. The forwarders
// themselves live in sub-packages (postgres, kube); this package has no
// protocol knowledge.
package forwarders
