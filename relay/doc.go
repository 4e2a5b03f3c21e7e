// Package relay copies bytes both ways between two streams the way a proxy
// must: two named copiers, a half-close (CloseWrite) passed on when one side
// reaches EOF, both directions joined before returning, and cancellation that
// closes both ends so no copier stays blocked. The bastion and the protocol
// forwarders use it; it knows nothing about what the bytes mean.
package relay
