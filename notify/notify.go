package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jumpgate/jumpgate/storage"
)

// Message is the Slack-compatible payload.
type Message struct {
	Text string `json:"text"`
}

// Notifier delivers request notifications to webhooks.
type Notifier struct {
	URLs        []string
	Client      *http.Client
	Logger      *slog.Logger
	MaxAttempts int           // default 5
	Backoff     time.Duration // first retry delay, doubled each time; default 1s
	// Sleep waits between attempts (tests inject a fast one).
	Sleep func(ctx context.Context, d time.Duration) error

	once  sync.Once
	queue chan Message
}

// QueueSize bounds undelivered notifications.
const QueueSize = 1024

func (n *Notifier) init() {
	n.once.Do(func() {
		n.queue = make(chan Message, QueueSize)
		if n.Client == nil {
			n.Client = &http.Client{Timeout: 10 * time.Second}
		}
		if n.Logger == nil {
			n.Logger = slog.Default()
		}
		if n.MaxAttempts <= 0 {
			n.MaxAttempts = 5
		}
		if n.Backoff <= 0 {
			n.Backoff = time.Second
		}
		if n.Sleep == nil {
			n.Sleep = func(ctx context.Context, d time.Duration) error {
				t := time.NewTimer(d)
				defer t.Stop()
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-t.C:
					return nil
				}
			}
		}
	})
}

// Notify queues a notification about r; it never blocks.
func (n *Notifier) Notify(r storage.Request, event string) {
	if n == nil || len(n.URLs) == 0 {
		return
	}
	n.init()
	select {
	case n.queue <- Message{Text: Text(r, event)}:
	default:
		n.Logger.Warn("notification dropped: queue full", "request", r.ID, "event", event)
	}
}

// Text is the human sentence for a request event.
func Text(r storage.Request, event string) string {
	switch event {
	case "created":
		s := fmt.Sprintf("jumpgate: %s asks to run on %s: %s", r.User, r.Target, r.What)
		if r.Kind == storage.KindAccess {
			s = fmt.Sprintf("jumpgate: %s asks for access to %s for %s", r.User, r.Target, r.Duration)
		}
		if r.Reason != "" {
			s += " — " + r.Reason
		}
		return s + fmt.Sprintf(" (request %s). Approve with: jumpgate approve %s", r.ID, r.ID)
	case storage.StatusApproved, storage.StatusDenied:
		s := fmt.Sprintf("jumpgate: request %s (%s, %s on %s) %s by %s", r.ID, r.Kind, r.User, r.Target, event, r.DecidedBy)
		if r.DecisionReason != "" {
			s += ": " + r.DecisionReason
		}
		return s
	default:
		return fmt.Sprintf("jumpgate: request %s (%s, %s on %s) %s", r.ID, r.Kind, r.User, r.Target, event)
	}
}

// Run delivers queued notifications until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	if n == nil || len(n.URLs) == 0 {
		return
	}
	n.init()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-n.queue:
			for _, u := range n.URLs {
				n.deliver(ctx, u, m)
			}
		}
	}
}

func (n *Notifier) deliver(ctx context.Context, url string, m Message) {
	body, _ := json.Marshal(m)
	delay := n.Backoff
	for attempt := 1; attempt <= n.MaxAttempts; attempt++ {
		retry, err := n.post(ctx, url, body)
		if err == nil {
			return
		}
		if !retry || attempt == n.MaxAttempts {
			// The URL may hold a secret token: log the host only.
			n.Logger.Error("webhook delivery failed", "host", hostOf(url), "attempts", attempt, "err", err)
			return
		}
		if n.Sleep(ctx, delay) != nil {
			return
		}
		delay *= 2
	}
}

func (n *Notifier) post(ctx context.Context, url string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.Client.Do(req)
	if err != nil {
		return true, fmt.Errorf("notify: %s", redact(err.Error(), url))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == 429 || resp.StatusCode >= 500:
		return true, fmt.Errorf("notify: status %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("notify: status %d", resp.StatusCode)
	}
}
