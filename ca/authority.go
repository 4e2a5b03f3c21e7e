package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/storage"
)

// Store is the slice of storage the authority needs.
type Store interface {
	NextSerial(ctx context.Context) (uint64, error)
	PutCert(ctx context.Context, c storage.CertRecord) error
}

// Authority signs certificates with the user and host CA keys.
type Authority struct {
	User ssh.Signer
	Host ssh.Signer
	// TrustedUser and TrustedHost are older CA keys still trusted (never
	// used to sign) during a rotation's overlap.
	TrustedUser []ssh.PublicKey
	TrustedHost []ssh.PublicKey
	Store       Store
	// DefaultTTL and MaxTTL bound user certificates.
	DefaultTTL time.Duration
	MaxTTL     time.Duration
	// Clock and Rand are injectable for tests.
	Clock func() time.Time
	Rand  io.Reader
}

// Backdate is how far before now a certificate becomes valid, to absorb
// clock skew between the CA and the hosts that check it.
const Backdate = time.Minute

// Extension names.
const (
	ExtPTY            = "permit-pty"
	ExtPortForwarding = "permit-port-forwarding"
	ExtAgent          = "permit-agent-forwarding"
	ExtX11            = "permit-X11-forwarding"
	ExtUserRC         = "permit-user-rc"
)

// UserRequest asks for a user certificate.
type UserRequest struct {
	PublicKey ssh.PublicKey
	// Username is the verified identity; it becomes the key id prefix.
	Username string
	// Groups and Roles are kept with the certificate record so later checks
	// (bastion, API) see the identity the certificate was issued to.
	Groups, Roles []string
	// Principals are the logins policy grants; never empty.
	Principals []string
	// TTL asked for (0: the default).
	TTL time.Duration
	// RoleMaxTTL is a lower cap from policy (0: none).
	RoleMaxTTL time.Duration
	// Extensions beyond permit-pty that policy allows.
	PortForwarding, AgentForwarding, X11Forwarding bool
	// SourceAddress restricts where the certificate may be used from (CIDRs).
	SourceAddress []string
	// Record, when set, stores the certificate record instead of
	// Store.PutCert (the API writes it together with its audit event).
	Record func(ctx context.Context, rec storage.CertRecord) error
}

// Issued is a signed certificate and what the caller should report.
type Issued struct {
	Cert    *ssh.Certificate
	Serial  uint64
	TTL     time.Duration
	Clamped bool
}

// ErrInvalidRequest is wrapped when a request cannot be signed as asked.
var ErrInvalidRequest = errors.New("ca: invalid request")

func (a *Authority) now() time.Time {
	if a.Clock != nil {
		return a.Clock()
	}
	return time.Now()
}

func (a *Authority) rand() io.Reader {
	if a.Rand != nil {
		return a.Rand
	}
	return rand.Reader
}

// SignUser issues a user certificate: key checked, TTL defaulted and
// clamped, principals validated, a durable serial, key id
// "<username>/<serial>", valid from now-1m.
func (a *Authority) SignUser(ctx context.Context, r UserRequest) (Issued, error) {
	if err := CheckPublicKey(r.PublicKey); err != nil {
		return Issued{}, err
	}
	if r.Username == "" || strings.ContainsAny(r.Username, "\x00\n\r") {
		return Issued{}, fmt.Errorf("%w: bad username %q", ErrInvalidRequest, r.Username)
	}
	if len(r.Principals) == 0 {
		// OpenSSH reads an empty principal list as "any login".
		return Issued{}, fmt.Errorf("%w: no principals", ErrInvalidRequest)
	}
	for _, p := range r.Principals {
		if p == "" || strings.ContainsAny(p, ",\x00\n *?") {
			return Issued{}, fmt.Errorf("%w: bad principal %q", ErrInvalidRequest, p)
		}
	}
	ttl, clamped := a.ClampTTL(r.TTL, r.RoleMaxTTL)
	ext := map[string]string{ExtPTY: ""}
	if r.PortForwarding {
		ext[ExtPortForwarding] = ""
	}
	if r.AgentForwarding {
		ext[ExtAgent] = ""
	}
	if r.X11Forwarding {
		ext[ExtX11] = ""
	}
	var crit map[string]string
	if len(r.SourceAddress) > 0 {
		for _, s := range r.SourceAddress {
			if _, _, err := net.ParseCIDR(s); err != nil && net.ParseIP(s) == nil {
				return Issued{}, fmt.Errorf("%w: source address %q", ErrInvalidRequest, s)
			}
		}
		crit = map[string]string{"source-address": strings.Join(r.SourceAddress, ",")}
	}
	serial, err := a.Store.NextSerial(ctx)
	if err != nil {
		return Issued{}, fmt.Errorf("ca: serial: %w", err)
	}
	now := a.now()
	cert := &ssh.Certificate{
		Key:             r.PublicKey,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           fmt.Sprintf("%s/%d", r.Username, serial),
		ValidPrincipals: slices.Clone(r.Principals),
		ValidAfter:      uint64(now.Add(-Backdate).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions:     ssh.Permissions{CriticalOptions: crit, Extensions: ext},
	}
	if err := cert.SignCert(a.rand(), a.User); err != nil {
		return Issued{}, fmt.Errorf("ca: sign: %w", err)
	}
	rec := storage.CertRecord{
		Serial: serial, KeyID: cert.KeyId, User: r.Username, Principals: cert.ValidPrincipals,
		Groups: r.Groups, Roles: r.Roles,
		ValidAfter: time.Unix(int64(cert.ValidAfter), 0).UTC(), ValidUntil: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		PublicKey: ssh.FingerprintSHA256(r.PublicKey), IssuedAt: now.UTC(),
	}
	record := a.Store.PutCert
	if r.Record != nil {
		record = r.Record
	}
	if err := record(ctx, rec); err != nil {
		return Issued{}, fmt.Errorf("ca: record certificate: %w", err)
	}
	return Issued{Cert: cert, Serial: serial, TTL: ttl, Clamped: clamped}, nil
}

// ClampTTL returns the lifetime a request for asked gets, and whether it
// was cut to the maximum.
func (a *Authority) ClampTTL(asked, roleMax time.Duration) (time.Duration, bool) {
	max := a.MaxTTL
	if max <= 0 {
		max = time.Hour
	}
	if roleMax > 0 && roleMax < max {
		max = roleMax
	}
	ttl := asked
	if ttl <= 0 {
		ttl = a.DefaultTTL
		if ttl <= 0 {
			ttl = 10 * time.Minute
		}
		if ttl > max {
			return max, false
		}
		return ttl, false
	}
	if ttl > max {
		return max, true
	}
	return ttl, false
}

// UpstreamRequest asks for the short-lived certificate the bastion presents
// to a recorded target on a user's behalf.
type UpstreamRequest struct {
	PublicKey                                      ssh.PublicKey
	Username                                       string
	Login                                          string
	SessionID                                      string
	TTL                                            time.Duration // default 2m
	PortForwarding, AgentForwarding, X11Forwarding bool
}

// SignUpstream issues a certificate for exactly one login with key id
// "<username>/<session-id>".
func (a *Authority) SignUpstream(ctx context.Context, r UpstreamRequest) (*ssh.Certificate, error) {
	if r.TTL <= 0 {
		r.TTL = 2 * time.Minute
	}
	serial, err := a.Store.NextSerial(ctx)
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	ext := map[string]string{ExtPTY: ""}
	if r.PortForwarding {
		ext[ExtPortForwarding] = ""
	}
	if r.AgentForwarding {
		ext[ExtAgent] = ""
	}
	if r.X11Forwarding {
		ext[ExtX11] = ""
	}
	now := a.now()
	cert := &ssh.Certificate{
		Key: r.PublicKey, Serial: serial, CertType: ssh.UserCert,
		KeyId:           r.Username + "/" + r.SessionID,
		ValidPrincipals: []string{r.Login},
		ValidAfter:      uint64(now.Add(-Backdate).Unix()),
		ValidBefore:     uint64(now.Add(r.TTL).Unix()),
		Permissions:     ssh.Permissions{Extensions: ext},
	}
	if err := cert.SignCert(a.rand(), a.User); err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	return cert, nil
}

// HostRequest asks for a host certificate.
type HostRequest struct {
	PublicKey  ssh.PublicKey
	Principals []string
	KeyID      string
	TTL        time.Duration // default 90 days
}

// SignHost issues a host certificate.
func (a *Authority) SignHost(ctx context.Context, r HostRequest) (*ssh.Certificate, error) {
	if err := CheckPublicKey(r.PublicKey); err != nil {
		return nil, err
	}
	if len(r.Principals) == 0 {
		return nil, fmt.Errorf("%w: a host certificate needs principals", ErrInvalidRequest)
	}
	if r.TTL <= 0 {
		r.TTL = 90 * 24 * time.Hour
	}
	serial, err := a.Store.NextSerial(ctx)
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	if r.KeyID == "" {
		r.KeyID = "host/" + r.Principals[0]
	}
	now := a.now()
	cert := &ssh.Certificate{
		Key: r.PublicKey, Serial: serial, CertType: ssh.HostCert, KeyId: r.KeyID,
		ValidPrincipals: slices.Clone(r.Principals),
		ValidAfter:      uint64(now.Add(-Backdate).Unix()),
		ValidBefore:     uint64(now.Add(r.TTL).Unix()),
	}
	if err := cert.SignCert(a.rand(), a.Host); err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	return cert, nil
}

// AuthorizedKey renders a public key as an authorized_keys line.
func AuthorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// IsUserCA reports whether k is the user CA key or a still trusted older one.
func (a *Authority) IsUserCA(k ssh.PublicKey) bool {
	return isOneOf(k, a.User.PublicKey(), a.TrustedUser)
}

// IsHostCA reports whether k is the host CA key or a still trusted older one.
func (a *Authority) IsHostCA(k ssh.PublicKey) bool {
	return isOneOf(k, a.Host.PublicKey(), a.TrustedHost)
}

// UserCAKeys returns the user CA key followed by the trusted older ones.
func (a *Authority) UserCAKeys() []ssh.PublicKey {
	return append([]ssh.PublicKey{a.User.PublicKey()}, a.TrustedUser...)
}

func isOneOf(k, cur ssh.PublicKey, more []ssh.PublicKey) bool {
	b := k.Marshal()
	if bytes.Equal(b, cur.Marshal()) {
		return true
	}
	for _, m := range more {
		if bytes.Equal(b, m.Marshal()) {
			return true
		}
	}
	return false
}

// ParseTrustedKeys parses authorized_keys lines of trusted CA keys.
func ParseTrustedKeys(lines []string) ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	for i, l := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, fmt.Errorf("ca: trusted key %d: %w", i, err)
		}
		out = append(out, k)
	}
	return out, nil
}
