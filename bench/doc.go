// Command bench is jumpgate's benchmark program (`make bench`): it starts
// a target sshd, an OpenSSH sshd as the reference jump host, the dev IdP
// and a jumpgate server on loopback, measures each benchmark of issue 8
// against its reference in the same run, interleaved, and prints (and
// writes into bench/RESULTS.md) a table of medians, ranges and ratios. It
// is not a pass/fail test: it exits non-zero only when setup fails. Each
// benchmark is a file of this package that calls register from init; the
// forwarder benchmarks (7 PostgreSQL, 8 Kubernetes) start their database
// or kube-apiserver and a jumpgate server of their own. `-only pg,kube`
// (or row numbers) runs some and merges their rows into the table.
package main
