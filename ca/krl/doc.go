// Package krl encodes and decodes OpenSSH Key Revocation Lists (the binary
// format of OpenSSH's PROTOCOL.krl that sshd's RevokedKeys and `ssh-keygen
// -Q` read) and answers, in process, whether a certificate or key is revoked
// with the same rules sshd applies: a serial number or key ID revoked for the
// certificate's CA (or for any CA), or the certificate's key or its CA key
// revoked explicitly or by fingerprint. It is for publishing the CA's
// revocations to sshd and for checking them in the bastion; it is not a
// revocation store (the caller keeps the list of revocations and builds a KRL
// from it), it does not sign KRLs (OpenSSH 9.4 and later refuse signed KRLs),
// and it does not check certificate validity, principals or signatures.
package krl
