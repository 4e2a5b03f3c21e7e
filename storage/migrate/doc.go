// Package migrate copies everything a jumpgate installation keeps from one
// storage backend to another (`jumpgate storage migrate`): keys, serials,
// issued certificates, revocations, the audit chain event by event with its
// hashes unchanged, requests and the session index. It verifies the copied
// audit chain before it reports success. It does not move recording files:
// they stay in each replica's recordings directory.
package migrate
