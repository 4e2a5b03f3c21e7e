// Package devenv is `jumpgate dev`: the whole product on loopback for
// trying it out — the clearly dev-only OpenID provider with demo users, the
// CA, the HTTPS API, the bastion and a local demo target, with a sample
// policy and state under ./.jumpgate-dev/. It writes the configuration a
// real installation would use and then runs the ordinary server with it. It
// is never meant for production.
package devenv
