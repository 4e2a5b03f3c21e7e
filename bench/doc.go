// Command bench is jumpgate's benchmark program (`make bench`): it starts
// a target sshd, an OpenSSH sshd as the reference jump host, the dev IdP
// and a jumpgate server on loopback, measures each benchmark of issue 8
// against its reference in the same run, interleaved, and prints (and
// writes into bench/RESULTS.md) a table of medians, ranges and ratios. It
// is not a pass/fail test: it exits non-zero only when setup fails. New
// benchmarks (the PostgreSQL and Kubernetes forwarders) are files of this
// package that call register from init with the row ID of `planned`.
package main
