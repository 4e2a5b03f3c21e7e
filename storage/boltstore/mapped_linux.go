package boltstore

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// dropMapped drops the pages of the database file from this process's page
// tables (the page cache keeps them). bbolt reads the file through a
// read-only shared mapping, and each page it reads makes the kernel map up
// to 64 KiB around it (fault-around, whatever the advice) — mostly pages
// just appended to the audit log — so without this the process's RSS grows
// with the audit log, not with what the bastion holds. A page touched
// again is mapped again from the page cache. Done inside a read
// transaction: bbolt cannot remap the file meanwhile.
func dropMapped(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		base, n := db.Info().Data, uintptr(tx.Size())
		if base == 0 || n == 0 {
			return nil
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, base, n, syscall.MADV_DONTNEED); errno != 0 {
			return errno
		}
		return nil
	})
}
