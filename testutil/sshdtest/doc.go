// Package sshdtest starts a real OpenSSH sshd (/usr/sbin/sshd, Debian
// package openssh-server) for tests: foreground, on 127.0.0.1 at a port
// chosen at run time, with a throwaway configuration in a temporary
// directory (user CAs, principals, a KRL, a host key and host certificate),
// stopped by PID when the test ends. It also gives the ssh client options
// that reach that server without touching the caller's ~/.ssh. It is for
// tests of jumpgate's CA, KRL and bastion against the reference server; it
// is not a way to run sshd in production, and it does not create users (it
// logs in as root when the tests run as root, see Options for other users).
package sshdtest
