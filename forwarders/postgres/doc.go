// Package postgres is the PostgreSQL forwarder of the bastion: it speaks the
// wire protocol to the client (no database password: the user is already
// authenticated by certificate) and logs in upstream with the target's
// stored credentials, then classifies every statement with the real
// PostgreSQL parser to block, hold or audit it, and masks result values
// (columns by catalog origin, value detectors) as rows stream through. It
// is not a connection pooler and not a general SQL proxy: one client
// connection is one upstream connection, and it does not rewrite queries.
package postgres
