//go:build !linux

package boltstore

import bolt "go.etcd.io/bbolt"

// dropMapped is a no-op where the kernel's mapping is not known to
// behave as Linux's.
func dropMapped(*bolt.DB) error { return nil }
