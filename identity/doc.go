// Package identity turns OIDC ID tokens into jumpgate identities: it
// verifies tokens from the company IdP (discovery, JWKS with key rotation,
// issuer, audience, expiry, email_verified) and from configured machine
// issuers such as CI systems, maps the username and groups claims, refuses
// replayed tokens, and tells an unreachable IdP apart from a bad token. It
// does not decide what an identity may do: that is package policy.
package identity
