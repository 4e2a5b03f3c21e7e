package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/jumpgate/jumpgate/storage"
)

// bbolt's on-disk meta page (go.etcd.io/bbolt/internal/common): a 16-byte
// page header, then magic, version, page size, flags, the root bucket
// (root page, sequence), freelist page, high-water page id, txid and an
// FNV-64a checksum of the fields before it, in the host's byte order
// (little endian on every platform jumpgate ships for).
const (
	boltMagic      = 0xED0CDAED
	boltPageHeader = 16
	boltMetaSize   = 64
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

func readMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:56])
	if le.Uint32(m[0:]) != boltMagic || le.Uint64(m[56:]) != h.Sum64() {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// checkFile refuses, before bbolt opens it, a store file that is empty or
// shorter than its own meta pages say: bbolt would initialise the first
// and fault reading past the end of the second. Files whose meta pages are
// both unreadable are left to bbolt, which refuses them (ErrInvalid,
// ErrChecksum) without writing.
func checkFile(path string, size int64) error {
	if size == 0 {
		return fmt.Errorf("boltstore: %s: %w: the file is empty (restore it from a backup, or remove it to start with an empty store; it was not modified)", path, storage.ErrCorrupt)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("boltstore: %s: %w", path, err)
	}
	defer f.Close()
	first := make([]byte, 4096)
	n, err := io.ReadFull(f, first)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("boltstore: %s: %w", path, err)
	}
	first = first[:n]
	m0, ok0 := readMeta(first)
	var m1 boltMeta
	ok1 := false
	if ok0 && m0.pageSize >= 512 && m0.pageSize <= 1<<16 {
		second := make([]byte, boltPageHeader+boltMetaSize)
		if _, err := f.ReadAt(second, int64(m0.pageSize)); err == nil {
			m1, ok1 = readMeta(second)
		}
	}
	if !ok0 && !ok1 {
		if size < 4096 {
			return fmt.Errorf("boltstore: %s: %w: the file is truncated (%d bytes; restore it from a backup; it was not modified)", path, storage.ErrCorrupt, size)
		}
		return nil // bbolt reports it
	}
	m := m0
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		m = m1
	}
	if need := int64(m.pgid) * int64(m.pageSize); size < need {
		return fmt.Errorf("boltstore: %s: %w: the file is truncated (%d bytes, its pages need %d; restore it from a backup; it was not modified)", path, storage.ErrCorrupt, size, need)
	}
	return nil
}

// deepCheck walks every page of db read-only and returns the first problem
// (bbolt's checker also turns a panic on a bad page into an error). The
// whole channel is drained so that the checker is done with the
// transaction before it ends.
func deepCheck(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		return first
	})
}
