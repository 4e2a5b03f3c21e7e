package bastion

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Reasons recorded in auth.failed events.
const (
	reasonNotCert     = "not_a_certificate"
	reasonHostCert    = "host_certificate"
	reasonForeignCA   = "unknown_ca"
	reasonInvalidCert = "invalid_certificate"
	reasonRevoked     = "revoked"
	reasonExpired     = "expired"
	reasonSource      = "source_address"
	reasonUnknownCert = "unknown_certificate"
	reasonNoRole      = "no_role"
)

// authenticate checks a key offered to the bastion: it must be a user
// certificate from the jumpgate user CA, valid now, not revoked, allowed
// from this source address, issued by this CA (its record found), and its
// owner must still hold a role.
func (s *Server) authenticate(ctx context.Context, key gossh.PublicKey, remote net.Addr) (*User, string, error) {
	cert, ok := key.(*gossh.Certificate)
	if !ok {
		return nil, reasonNotCert, errors.New("bastion: plain public keys are not accepted; log in with jumpgate login")
	}
	if cert.CertType != gossh.UserCert {
		return nil, reasonHostCert, errors.New("bastion: a host certificate cannot log in")
	}
	if !s.cfg.Authority.IsUserCA(cert.SignatureKey) {
		return nil, reasonForeignCA, errors.New("bastion: certificate not signed by the jumpgate user CA")
	}
	if len(cert.ValidPrincipals) == 0 {
		return nil, reasonInvalidCert, errors.New("bastion: certificate without principals")
	}
	checker := &gossh.CertChecker{
		Clock:                    s.cfg.Clock,
		SupportedCriticalOptions: []string{"source-address"},
		IsRevoked:                s.cfg.Revocations.IsRevoked,
	}
	if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
		switch {
		case s.cfg.Revocations.IsRevoked(cert):
			return nil, reasonRevoked, err
		case strings.Contains(err.Error(), "expired"), strings.Contains(err.Error(), "not yet valid"):
			return nil, reasonExpired, err
		default:
			return nil, reasonInvalidCert, err
		}
	}
	if err := checkSourceAddress(remote, cert.CriticalOptions["source-address"]); err != nil {
		return nil, reasonSource, err
	}
	rec, err := s.cfg.Certs.Cert(ctx, cert.Serial)
	if err != nil || rec.KeyID != cert.KeyId {
		return nil, reasonUnknownCert, fmt.Errorf("bastion: certificate serial %d is not one this CA issued to a user: %v", cert.Serial, err)
	}
	u := s.withGrants(ctx, &User{Name: rec.User, Groups: rec.Groups, Roles: rec.Roles, Cert: cert, Source: remote.String()})
	if !s.cfg.Policy.Current().HasAccess(u.Identity()) {
		return nil, reasonNoRole, fmt.Errorf("bastion: %s holds no role", u.Name)
	}
	return u, "", nil
}

// checkSourceAddress enforces the source-address critical option.
func checkSourceAddress(remote net.Addr, list string) error {
	if list == "" {
		return nil
	}
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return errors.New("bastion: source-address set but the peer address is not TCP")
	}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if _, n, err := net.ParseCIDR(s); err == nil {
			if n.Contains(tcp.IP) {
				return nil
			}
		} else if ip := net.ParseIP(s); ip != nil && ip.Equal(tcp.IP) {
			return nil
		} else if err != nil && ip == nil {
			return fmt.Errorf("bastion: bad source-address %q", s)
		}
	}
	return fmt.Errorf("bastion: source address %s not allowed by certificate", tcp.IP)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// failLimiter refuses connections from an address after repeated
// authentication failures, like sshd's PerSourcePenalties.
type failLimiter struct {
	clock func() time.Time
	mu    sync.Mutex
	fails map[string][]time.Time
}

const (
	failWindow = time.Minute
	failMax    = 20
)

func newFailLimiter(clock func() time.Time) *failLimiter {
	return &failLimiter{clock: clock, fails: map[string][]time.Time{}}
}

func (l *failLimiter) failed(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	if len(l.fails) > 10000 {
		for k, v := range l.fails {
			if len(v) == 0 || now.Sub(v[len(v)-1]) > failWindow {
				delete(l.fails, k)
			}
		}
	}
	l.fails[ip] = append(prune(l.fails[ip], now), now)
}

func (l *failLimiter) allowed(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := prune(l.fails[ip], l.clock())
	l.fails[ip] = v
	return len(v) < failMax
}

func prune(v []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(v) && now.Sub(v[i]) > failWindow {
		i++
	}
	return v[i:]
}
