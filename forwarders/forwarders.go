package forwarders

import (
	"context"
	"io"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/storage"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
)

// Session is the authenticated user a forwarded channel belongs to.
type Session struct {
	// ID names this channel's session in audit events and the session index.
	ID string
	// User, Groups and Roles are the identity from the user's certificate.
	User   string
	Groups []string
	Roles  []string
	// Grants are the user's open just-in-time access windows.
	Grants []policy.Grant
	// Source is the user's network address.
	Source string
}

// Identity converts s for policy evaluation.
func (s Session) Identity() policy.Identity {
	return policy.Identity{User: s.User, Groups: s.Groups, Roles: s.Roles, Grants: s.Grants}
}

// Stream is the channel a forwarder serves: an SSH direct-tcpip channel in
// production, a TCP connection in tests. CloseWrite, when the stream has
// it, half-closes.
type Stream interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// Auditor appends audit events; an error means the event is not durable
// and the forwarder must refuse what it describes (an *audit.Log).
type Auditor interface {
	Emit(ctx context.Context, e audit.Event) (audit.Event, error)
}

// Approver holds operations for approval (an *approvals.Queue).
type Approver interface {
	Create(ctx context.Context, r storage.Request, ttl time.Duration) (storage.Request, error)
	Wait(ctx context.Context, id string) (storage.Request, error)
}

// Forwarder serves one channel to a target of its kind until the client or
// the target ends it, or ctx is cancelled (its cause says why).
type Forwarder interface {
	Serve(ctx context.Context, conn Stream, s Session, t config.Target) error
}
