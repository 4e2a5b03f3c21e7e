package postgres

import (
	"context"
	"os"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/forwarders"
)

type nopAudit struct{}

func (nopAudit) Emit(_ context.Context, e audit.Event) (audit.Event, error) { return e, nil }

func sessionFor(group string) forwarders.Session {
	return forwarders.Session{ID: "s-1", User: "tester", Groups: []string{group}}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
