package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// catalog resolves table OIDs and attribute numbers to names through a
// side connection to the target, with a cache.
type catalog struct {
	connect func(ctx context.Context) (*pgconn.PgConn, error)
	ttl     time.Duration
	now     func() time.Time

	mu    sync.Mutex
	conn  *pgconn.PgConn
	cache map[uint32]relInfo
}

type relInfo struct {
	name string
	cols map[int16]string
	at   time.Time
}

func (c *catalog) exec(ctx context.Context, sql string, args ...string) ([][][]byte, []pgconn.FieldDescription, error) {
	if c.conn == nil || c.conn.IsClosed() {
		conn, err := c.connect(ctx)
		if err != nil {
			return nil, nil, err
		}
		c.conn = conn
	}
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := c.conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		var pe *pgconn.PgError
		if !errors.As(res.Err, &pe) {
			c.conn.Close(context.Background())
			c.conn = nil
		}
		return nil, nil, res.Err
	}
	return res.Rows, res.FieldDescriptions, nil
}

// cached returns the relation with oid when the cache holds it.
func (c *catalog) cached(oid uint32) (relInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.cache[oid]
	return r, ok && c.now().Sub(r.at) < c.ttl
}

// relation returns the name and columns of the relation with oid.
func (c *catalog) relation(ctx context.Context, oid uint32) (relInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.cache[oid]; ok && c.now().Sub(r.at) < c.ttl {
		return r, nil
	}
	rows, _, err := c.exec(ctx, `SELECT c.relname, a.attnum, a.attname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid WHERE c.oid = $1::oid AND a.attnum > 0 ORDER BY a.attnum`, strconv.FormatUint(uint64(oid), 10))
	if err != nil {
		return relInfo{}, fmt.Errorf("postgres: catalog lookup of relation %d: %w", oid, err)
	}
	r := relInfo{cols: map[int16]string{}, at: c.now()}
	for _, row := range rows {
		r.name = string(row[0])
		n, _ := strconv.Atoi(string(row[1]))
		r.cols[int16(n)] = string(row[2])
	}
	if r.name == "" {
		return r, fmt.Errorf("postgres: catalog has no relation %d", oid)
	}
	if c.cache == nil || len(c.cache) > 10000 {
		c.cache = map[uint32]relInfo{}
	}
	c.cache[oid] = r
	return r, nil
}

// columnsOf returns the visible columns of a relation named as in SQL.
func (c *catalog) columnsOf(ctx context.Context, rel string) (string, []string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rows, _, err := c.exec(ctx, `SELECT c.relname, a.attname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid WHERE c.oid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, rel)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: catalog lookup of %q: %w", rel, err)
	}
	var name string
	var cols []string
	for _, row := range rows {
		name = string(row[0])
		cols = append(cols, string(row[1]))
	}
	return name, cols, nil
}

// describe returns the result columns of query without running it.
func (c *catalog) describe(ctx context.Context, query string) ([]field, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.conn.IsClosed() {
		conn, err := c.connect(ctx)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	sd, err := c.conn.Prepare(ctx, "", query, nil)
	if err != nil {
		return nil, fmt.Errorf("postgres: describe: %w", err)
	}
	fs := make([]field, len(sd.Fields))
	for i, f := range sd.Fields {
		fs[i] = field{name: f.Name, tableOID: f.TableOID, attnum: int16(f.TableAttributeNumber), typeOID: f.DataTypeOID}
	}
	return fs, nil
}

func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.conn.Close(ctx)
		c.conn = nil
	}
}
