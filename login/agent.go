package login

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// agentLifetime is the number of seconds from now until the certificate
// expires, at least 1 and at most what the agent protocol can carry.
func agentLifetime(cert *ssh.Certificate, now time.Time) uint32 {
	if cert.ValidBefore == ssh.CertTimeInfinity {
		return 0 // no constraint
	}
	left := time.Unix(int64(cert.ValidBefore), 0).Sub(now)
	secs := int64(left / time.Second)
	switch {
	case secs < 1:
		return 1
	case secs > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(secs)
}

// AddToAgent adds the key and its certificate to the ssh-agent listening on
// socket, with a lifetime that ends when the certificate does.
func AddToAgent(ctx context.Context, socket string, priv ed25519.PrivateKey, cert *ssh.Certificate, now time.Time) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("login: ssh-agent: %w", err)
	}
	defer conn.Close()
	// I/O deadlines are wall-clock: a stuck agent must not hang login.
	dl := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = conn.SetDeadline(dl)
	err = agent.NewClient(conn).Add(agent.AddedKey{
		PrivateKey:   priv,
		Certificate:  cert,
		Comment:      "jumpgate " + cert.KeyId,
		LifetimeSecs: agentLifetime(cert, now),
	})
	if err != nil {
		return fmt.Errorf("login: ssh-agent: add key: %w", err)
	}
	return nil
}
