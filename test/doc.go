// Package test holds jumpgate's end-to-end tests: the real jumpgate binary,
// stock OpenSSH clients (ssh, scp, sftp), a real sshd target, asciinema, and
// (in later suites) PostgreSQL, kubectl and a browser, all on loopback.
package test
