// Package login is the client side of `jumpgate login` and `jumpgate status`:
// it discovers the server's OIDC settings, obtains an ID token (authorization
// code + PKCE through a loopback redirect, the device authorization grant, or
// a token file), trades it for a short-lived SSH user certificate on a fresh
// ed25519 key, writes the identity atomically under the SSH directory, adds it
// to the ssh-agent, and later loads that identity to sign API calls. It is
// not the cobra command (cmd/jumpgate wires flags to these functions), not an
// OIDC provider, and it makes no authorization decisions: the server does.
package login
