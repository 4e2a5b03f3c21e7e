// Package sshauth authenticates jumpgate API requests with the caller's SSH
// user certificate: the client signs a canonical form of each HTTP request
// (method, host, request URI, timestamp, nonce and body hash) with the
// certificate's private key, and the server verifies that signature, the
// certificate type, the clock skew and nonce freshness before handing the
// certificate to a caller-supplied checker for CA trust, validity and
// revocation. It is for the CLI's authenticated calls after `jumpgate login`;
// it is not a session or token system, it does not decide what a user may do
// (policy does), and it does not itself know which CA keys to trust.
package sshauth
