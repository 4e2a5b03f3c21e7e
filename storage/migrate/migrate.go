package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/storage"
)

// KVKeys are the blobs jumpgate keeps in storage.
var KVKeys = []string{"ca/user", "ca/host", "audit/signing"}

// Report counts what was copied.
type Report struct {
	Certs, Revocations, AuditEvents, Requests, Sessions, Keys int
	SerialFloor                                               uint64
}

// ErrNotEmpty is returned when the target already holds an audit chain.
var ErrNotEmpty = errors.New("migrate: the target already holds audit events; migrate into an empty store")

// Copy copies src into dst (which must be empty) and verifies the chain.
func Copy(ctx context.Context, src, dst storage.Store) (Report, error) {
	var r Report
	if recs, err := dst.AuditRange(ctx, 1, 1); err != nil {
		return r, fmt.Errorf("migrate: target: %w", err)
	} else if len(recs) > 0 {
		return r, ErrNotEmpty
	}
	for _, k := range KVKeys {
		v, err := src.GetKV(ctx, k)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return r, fmt.Errorf("migrate: key %s: %w", k, err)
		}
		got, err := dst.PutKVIfAbsent(ctx, k, v)
		if err != nil {
			return r, fmt.Errorf("migrate: key %s: %w", k, err)
		}
		if string(got) != string(v) {
			return r, fmt.Errorf("migrate: the target already has a different %s", k)
		}
		r.Keys++
	}
	// Serials: the target must never hand out one the source did.
	sm, ok1 := src.(storage.SerialMarker)
	dm, ok2 := dst.(storage.SerialMarker)
	if !ok1 || !ok2 {
		return r, errors.New("migrate: a backend cannot report or raise its serial counter")
	}
	hi, err := sm.SerialHighWater(ctx)
	if err != nil {
		return r, err
	}
	// Audit chain, event by event with the original bytes and hashes; the
	// builder checks the chain position the target assigns matches.
	from := uint64(1)
	for {
		recs, err := src.AuditRange(ctx, from, 1000)
		if err != nil {
			return r, fmt.Errorf("migrate: read audit: %w", err)
		}
		for _, rec := range recs {
			ev, err := audit.CheckLine(rec.JSON)
			if err != nil {
				return r, fmt.Errorf("migrate: source event %d: %w", rec.Seq, err)
			}
			if _, err := dst.AppendAudit(ctx, func(seq uint64, prev string) ([]byte, string, error) {
				if seq != rec.Seq || prev != ev.PrevHash {
					return nil, "", fmt.Errorf("migrate: event %d would land at %d", rec.Seq, seq)
				}
				return rec.JSON, rec.Hash, nil
			}); err != nil {
				return r, err
			}
			r.AuditEvents++
		}
		if len(recs) < 1000 {
			break
		}
		from = recs[len(recs)-1].Seq + 1
	}
	revs, err := src.Revocations(ctx)
	if err != nil {
		return r, err
	}
	for _, v := range revs {
		if err := dst.AddRevocation(ctx, v); err != nil {
			return r, err
		}
		r.Revocations++
	}
	reqs, err := src.Requests(ctx)
	if err != nil {
		return r, err
	}
	for _, q := range reqs {
		if err := dst.CreateRequest(ctx, q); err != nil {
			return r, err
		}
		r.Requests++
	}
	sess, err := src.Sessions(ctx, storage.SessionFilter{})
	if err != nil {
		return r, err
	}
	for _, s := range sess {
		if err := dst.PutSession(ctx, s); err != nil {
			return r, err
		}
		r.Sessions++
	}
	// Certificates: every serial up to the high-water mark that has a record.
	for serial := uint64(1); serial <= hi; serial++ {
		c, err := src.Cert(ctx, serial)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return r, err
		}
		if err := dst.PutCert(ctx, c); err != nil {
			return r, err
		}
		r.Certs++
		if c.Serial > hi {
			hi = c.Serial
		}
	}
	if err := dm.SerialFloor(ctx, hi); err != nil {
		return r, err
	}
	r.SerialFloor = hi
	n, err := audit.Verify(ctx, dst)
	if err != nil {
		return r, fmt.Errorf("migrate: the copied audit chain does not verify: %w", err)
	}
	if n != r.AuditEvents {
		return r, fmt.Errorf("migrate: %d events copied but %d verified", r.AuditEvents, n)
	}
	return r, nil
}
