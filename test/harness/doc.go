// Package harness starts the real things end-to-end tests and benchmarks
// drive: the jumpgate binary built from this tree, an OpenID provider (the
// dev IdP, served over TLS on loopback), `jumpgate server` processes with a
// written config and policy, and users logged in with `jumpgate login` whose
// ssh_config makes stock OpenSSH go through the bastion. Every process it
// starts is stopped by PID when the test ends.
package harness
