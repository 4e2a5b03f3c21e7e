// Package httpapi is jumpgate's HTTPS JSON API: the certificate endpoint that
// trades an OIDC ID token for an SSH user certificate, the public CA keys and
// KRL, and the authenticated endpoints the CLI uses for audit, sessions,
// revocation, host certificates and requests. Handlers translate HTTP into
// calls on the CA, policy, audit and storage packages and map their typed
// errors to statuses; they hold no business logic of their own. The web
// console is a separate package mounted beside it.
package httpapi
