// Package storage declares what jumpgate keeps durably — certificate serials
// and issued certificates, revocations, the audit chain, access requests and
// holds, and the session index — as plain record types and the Store
// interface that every backend implements. Consumers depend on the narrow
// slice of Store they need. It is not a backend itself: see storage/boltstore
// (embedded, one machine) and, for several replicas, a PostgreSQL backend.
package storage
