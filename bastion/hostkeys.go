package bastion

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/ca"
)

// hostKeys mints, per target name, the host certificate the bastion
// presents when it terminates an inner SSH session, so the client's
// "@cert-authority" line verifies it as that target. Keys are ephemeral and
// certificates short-lived; both are renewed before they expire.
type hostKeys struct {
	authority *ca.Authority
	mu        sync.Mutex
	byName    map[string]hostKey
}

type hostKey struct {
	signer gossh.Signer
	until  time.Time
}

const hostCertTTL = 24 * time.Hour

func newHostKeys(a *ca.Authority) *hostKeys {
	return &hostKeys{authority: a, byName: map[string]hostKey{}}
}

func (h *hostKeys) signer(ctx context.Context, target string, now time.Time) (gossh.Signer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if k, ok := h.byName[target]; ok && now.Before(k.until) {
		return k.signer, nil
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bastion: host key: %w", err)
	}
	base, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("bastion: host key: %w", err)
	}
	cert, err := h.authority.SignHost(ctx, ca.HostRequest{PublicKey: base.PublicKey(), Principals: []string{target}, KeyID: "jumpgate-bastion/" + target, TTL: hostCertTTL})
	if err != nil {
		return nil, err
	}
	s, err := gossh.NewCertSigner(cert, base)
	if err != nil {
		return nil, fmt.Errorf("bastion: host cert signer: %w", err)
	}
	h.byName[target] = hostKey{signer: s, until: now.Add(hostCertTTL / 2)}
	return s, nil
}
