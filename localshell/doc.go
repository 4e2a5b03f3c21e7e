// Package localshell is the upstream of a jumpgate target of kind "local": a
// shell on the bastion host itself, run in a PTY (or with plain pipes for a
// command without a terminal) as a configured OS account. It builds an
// in-process SSH server (gliderlabs/ssh) reached over an in-memory socket
// pair and hands the bastion an ordinary *ssh.Client, so the bastion relays,
// records and filters a local session exactly as it does for a remote one;
// session requests are served with sshd's semantics (pty-req, window-change,
// an allowlist of env variables, signals, break, exit-status/exit-signal and
// the sftp subsystem). It is not an SSH server for the network: it never
// listens, it authenticates nobody (the bastion has already authenticated
// and authorized the user before calling Connect), and it offers no port,
// agent or X11 forwarding.
package localshell
