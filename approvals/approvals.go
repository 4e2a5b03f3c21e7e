package approvals

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
)

// Store is the slice of storage approvals need.
type Store interface {
	CreateRequest(ctx context.Context, r storage.Request) error
	Request(ctx context.Context, id string) (storage.Request, error)
	UpdateRequest(ctx context.Context, id string, fn func(*storage.Request) error) (storage.Request, error)
	Requests(ctx context.Context) ([]storage.Request, error)
}

// Errors callers branch on.
var (
	ErrNotApprover = errors.New("approvals: not an approver")
	ErrOwnRequest  = errors.New("approvals: nobody approves their own request")
	ErrDecided     = errors.New("approvals: request already decided")
	ErrTooLong     = errors.New("approvals: duration above requests.max_duration")
)

// Notifier is told about new requests and decisions (webhooks); it must not
// block.
type Notifier interface {
	Notify(r storage.Request, event string)
}

// Queue is the approval queue.
type Queue struct {
	Store    Store
	Audit    *audit.Log
	Policy   *policy.Store
	Clock    func() time.Time
	Notifier Notifier
	// Poll is how often waiters re-read storage (default 1s).
	Poll time.Duration

	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

func (q *Queue) now() time.Time {
	if q.Clock != nil {
		return q.Clock()
	}
	return time.Now()
}

// NewID returns a short random request id.
func NewID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "r-" + hex.EncodeToString(b)
}

// Create stores a new pending request and audits it. Held operations use
// kind command/sql/kube; ttl is how long it waits for a decision.
func (q *Queue) Create(ctx context.Context, r storage.Request, ttl time.Duration) (storage.Request, error) {
	if r.ID == "" {
		r.ID = NewID()
	}
	now := q.now().UTC()
	r.Status = storage.StatusPending
	r.CreatedAt = now
	r.ExpiresAt = now.Add(ttl)
	if r.Kind == storage.KindAccess {
		if max := time.Duration(q.Policy.Current().Requests.MaxDuration); max > 0 && r.Duration > max {
			return r, fmt.Errorf("%w (%s)", ErrTooLong, max)
		}
	}
	typ := audit.RequestCreated
	switch r.Kind {
	case storage.KindCommand:
		typ = audit.CommandHeld
	case storage.KindSQL:
		typ = audit.SQLHeld
	}
	// Audit first: a hold that is not in the log does not exist.
	if _, err := q.Audit.Emit(ctx, audit.Event{Type: typ, User: r.User, Target: r.Target, Session: r.Session, Details: map[string]any{
		"request": r.ID, "kind": r.Kind, "what": r.What, "reason": r.Reason, "duration": r.Duration.String(),
	}}); err != nil {
		return r, err
	}
	if typ != audit.RequestCreated {
		if _, err := q.Audit.Emit(ctx, audit.Event{Type: audit.RequestCreated, User: r.User, Target: r.Target, Session: r.Session, Details: map[string]any{
			"request": r.ID, "kind": r.Kind, "what": r.What,
		}}); err != nil {
			return r, err
		}
	}
	if err := q.Store.CreateRequest(ctx, r); err != nil {
		return r, fmt.Errorf("approvals: %w", err)
	}
	if q.Notifier != nil {
		q.Notifier.Notify(r, "created")
	}
	return r, nil
}

// Wait blocks until r is decided, expires or ctx ends. An expired request
// is marked so and returned with status expired.
func (q *Queue) Wait(ctx context.Context, id string) (storage.Request, error) {
	ch := make(chan struct{}, 1)
	q.mu.Lock()
	if q.waiters == nil {
		q.waiters = map[string][]chan struct{}{}
	}
	q.waiters[id] = append(q.waiters[id], ch)
	q.mu.Unlock()
	defer q.unwait(id, ch)
	poll := q.Poll
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		r, err := q.Store.Request(ctx, id)
		if err != nil {
			return r, fmt.Errorf("approvals: %w", err)
		}
		if r.Status != storage.StatusPending {
			return r, nil
		}
		if !q.now().Before(r.ExpiresAt) {
			return q.expire(ctx, id)
		}
		select {
		case <-ctx.Done():
			return r, context.Cause(ctx)
		case <-ch:
		case <-t.C:
		}
	}
}

func (q *Queue) unwait(id string, ch chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ws := q.waiters[id]
	for i, w := range ws {
		if w == ch {
			q.waiters[id] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(q.waiters[id]) == 0 {
		delete(q.waiters, id)
	}
}

func (q *Queue) wake(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, w := range q.waiters[id] {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Wake wakes local waiters of id (used when another replica reports a
// decision); an empty id wakes every waiter to re-read its request.
func (q *Queue) Wake(id string) {
	if id != "" {
		q.wake(id)
		return
	}
	q.mu.Lock()
	ids := make([]string, 0, len(q.waiters))
	for k := range q.waiters {
		ids = append(ids, k)
	}
	q.mu.Unlock()
	for _, k := range ids {
		q.wake(k)
	}
}

func (q *Queue) expire(ctx context.Context, id string) (storage.Request, error) {
	r, err := q.Store.UpdateRequest(ctx, id, func(r *storage.Request) error {
		if r.Status != storage.StatusPending {
			return nil
		}
		r.Status = storage.StatusExpired
		r.DecidedAt = q.now().UTC()
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("approvals: %w", err)
	}
	if r.Status == storage.StatusExpired {
		_, _ = q.Audit.Emit(ctx, audit.Event{Type: audit.RequestExpired, User: r.User, Target: r.Target, Session: r.Session, Details: map[string]any{"request": r.ID, "kind": r.Kind}})
		if q.Notifier != nil {
			q.Notifier.Notify(r, "expired")
		}
	}
	return r, nil
}

// Decide approves or denies a pending request on behalf of approver.
func (q *Queue) Decide(ctx context.Context, id string, approver policy.Identity, approve bool, reason string) (storage.Request, error) {
	cur, err := q.Store.Request(ctx, id)
	if err != nil {
		return cur, fmt.Errorf("approvals: %w", err)
	}
	if cur.User == approver.User {
		return cur, ErrOwnRequest
	}
	if !q.Policy.Current().IsApprover(approver) {
		return cur, ErrNotApprover
	}
	now := q.now().UTC()
	if cur.Status == storage.StatusPending && !now.Before(cur.ExpiresAt) {
		if r, err := q.expire(ctx, id); err == nil {
			return r, fmt.Errorf("%w: it expired", ErrDecided)
		}
	}
	var decidedNow bool
	r, err := q.Store.UpdateRequest(ctx, id, func(r *storage.Request) error {
		if r.Status != storage.StatusPending {
			return fmt.Errorf("%w: it is %s", ErrDecided, r.Status)
		}
		decidedNow = true
		r.DecidedBy, r.DecidedAt, r.DecisionReason = approver.User, now, reason
		if approve {
			r.Status = storage.StatusApproved
			if r.Kind == storage.KindAccess {
				r.AccessUntil = now.Add(r.Duration)
			}
		} else {
			r.Status = storage.StatusDenied
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrDecided) {
			return r, err
		}
		return r, fmt.Errorf("approvals: %w", err)
	}
	if decidedNow {
		typ := audit.RequestDenied
		if approve {
			typ = audit.RequestApproved
		}
		if _, err := q.Audit.Emit(ctx, audit.Event{Type: typ, User: approver.User, Target: r.Target, Session: r.Session, Details: map[string]any{
			"request": r.ID, "kind": r.Kind, "requester": r.User, "reason": reason, "what": r.What,
		}}); err != nil {
			return r, err
		}
		q.wake(id)
		if q.Notifier != nil {
			q.Notifier.Notify(r, r.Status)
		}
	}
	return r, nil
}

// List returns requests with expired pending ones reported as expired.
func (q *Queue) List(ctx context.Context) ([]storage.Request, error) {
	rs, err := q.Store.Requests(ctx)
	if err != nil {
		return nil, fmt.Errorf("approvals: %w", err)
	}
	now := q.now()
	for i := range rs {
		if rs[i].Status == storage.StatusPending && !now.Before(rs[i].ExpiresAt) {
			if r, err := q.expire(ctx, rs[i].ID); err == nil {
				rs[i] = r
			}
		}
	}
	return rs, nil
}

// Grants returns user's approved access windows that are open now.
func (q *Queue) Grants(ctx context.Context, user string) ([]policy.Grant, error) {
	rs, err := q.approvedAccess(ctx, func(r storage.Request, now time.Time) bool {
		return r.User == user && now.Before(r.AccessUntil)
	})
	var out []policy.Grant
	for _, r := range rs {
		out = append(out, policy.Grant{Target: r.Target, Until: r.AccessUntil})
	}
	return out, err
}

// Ended returns approved access requests whose window has passed and that
// have not been closed out yet.
func (q *Queue) Ended(ctx context.Context) ([]storage.Request, error) {
	return q.approvedAccess(ctx, func(r storage.Request, now time.Time) bool {
		return !now.Before(r.AccessUntil) && r.ClosedAt.IsZero()
	})
}

// Lapsed returns approved access requests whose window ended within the
// last `within`, closed out or not: every replica ends its own sessions
// under them, while one replica closes each out (ClaimClose).
func (q *Queue) Lapsed(ctx context.Context, within time.Duration) ([]storage.Request, error) {
	return q.approvedAccess(ctx, func(r storage.Request, now time.Time) bool {
		return !now.Before(r.AccessUntil) && now.Sub(r.AccessUntil) <= within
	})
}

// approvedAccess returns the approved access requests keep accepts at the
// queue's now.
func (q *Queue) approvedAccess(ctx context.Context, keep func(r storage.Request, now time.Time) bool) ([]storage.Request, error) {
	rs, err := q.Store.Requests(ctx)
	if err != nil {
		return nil, fmt.Errorf("approvals: %w", err)
	}
	now := q.now()
	var out []storage.Request
	for _, r := range rs {
		if r.Kind == storage.KindAccess && r.Status == storage.StatusApproved && keep(r, now) {
			out = append(out, r)
		}
	}
	return out, nil
}

// errClosed: another caller closed the window out first.
var errClosed = errors.New("approvals: window already closed out")

// ClaimClose marks an ended window closed out and reports whether this
// call did it: with several replicas exactly one wins (the store updates a
// request atomically), and only it writes the access.ended event.
func (q *Queue) ClaimClose(ctx context.Context, id string) (bool, error) {
	_, err := q.Store.UpdateRequest(ctx, id, func(r *storage.Request) error {
		if !r.ClosedAt.IsZero() {
			return errClosed
		}
		r.ClosedAt = q.now().UTC()
		return nil
	})
	switch {
	case errors.Is(err, errClosed):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}
