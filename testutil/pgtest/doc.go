// Package pgtest starts a real PostgreSQL server (initdb, pg_ctl) on
// 127.0.0.1 at a free port for one test, with users for SCRAM-SHA-256, MD5
// and trust logins and an optional self-signed TLS certificate, and runs
// the real psql against any address. It is for tests only, not for
// production code; the server is stopped by PID when the test ends.
package pgtest
