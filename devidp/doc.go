// Package devidp is the DEVELOPMENT-ONLY OpenID Provider that `jumpgate dev`
// embeds on loopback so the whole product can be tried without an external
// IdP: it serves discovery, JWKS, the authorization-code (PKCE S256) and
// device-authorization grants, userinfo and end-session through the
// github.com/zitadel/oidc/v3 `op` package, keeps its state in memory, checks
// plain-text demo passwords from its configuration and renders minimal login
// and device-verification pages, plus Go helpers (BrowserLogin,
// CompleteDeviceLogin) that drive those pages for terminals and tests. It is
// NOT an identity provider for production: it has no user database, no
// sessions, no MFA, no rate limiting, no refresh tokens and no key rotation,
// and it allows http issuers on loopback only because it is a dev tool.
package devidp
