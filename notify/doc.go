// Package notify tells people about access requests and decisions through
// webhooks (Slack-compatible JSON: {"text": ...}). Notifications are queued
// and delivered by a background worker with retries and exponential
// backoff, so a slow or dead webhook never blocks the gate; when the queue
// is full a notification is dropped and logged. It is not an audit trail:
// the audit log is.
package notify
