package notify

import (
	"net/url"
	"strings"
)

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}

// redact removes the full URL (which may carry a token) from a message.
func redact(msg, raw string) string {
	return strings.ReplaceAll(msg, raw, hostOf(raw))
}
