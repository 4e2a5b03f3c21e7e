// Package boltstore is the embedded storage backend: one bbolt file in the
// data directory, for a single jumpgate server. Writes from concurrent
// goroutines are coalesced into shared fsynced transactions (bbolt's Batch),
// and certificate serials are reserved durably in blocks so that issuing a
// certificate costs no extra fsync. It refuses to open a file another process
// holds or that is not a valid database, and never rewrites one. It is not
// for several replicas: use the PostgreSQL backend for that.
package boltstore
