// Package pgstore is the PostgreSQL storage backend, for running several
// jumpgate replicas against one database: certificate serials come from a
// sequence so they are unique across replicas, the audit chain stays one
// linear hash chain because every append locks the single audit tip row,
// requests are updated under a row lock and announced with NOTIFY so an
// approval on one replica wakes the waiter on another, and recordings are
// kept as ordered chunks. Each replica renews a lease row, so the others can
// tell when it is gone and claim its running sessions. The schema is
// embedded and migrated under an advisory lock at Open, so replicas may start
// at the same time. It is not a general SQL layer and not for a single
// server, where the embedded boltstore needs no database at all.
package pgstore
