package krl

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// certFixture is a set of certificates from two in-memory CAs, written to
// files for ssh-keygen.
type certFixture struct {
	ca, otherCA ssh.Signer
	user, other ssh.PublicKey // other: a key that some KRLs revoke outright
	certs       map[string]*ssh.Certificate
	paths       map[string]string
}

func newCertFixture(t *testing.T, dir string) *certFixture {
	t.Helper()
	f := &certFixture{
		ca:      seededSigner(t, 10),
		otherCA: seededSigner(t, 11),
		user:    seededSigner(t, 12).PublicKey(),
		other:   seededSigner(t, 13).PublicKey(),
		certs:   map[string]*ssh.Certificate{},
		paths:   map[string]string{},
	}
	add := func(name string, ca ssh.Signer, key ssh.PublicKey, serial uint64, id string) {
		c := signCert(t, ca, key, serial, id)
		f.certs[name] = c
		f.paths[name] = writeFile(t, dir, name+"-cert.pub", ssh.MarshalAuthorizedKey(c))
	}
	add("serial5", f.ca, f.user, 5, "dave/5")
	add("serial6", f.ca, f.user, 6, "dave/6")
	add("serial11", f.ca, f.user, 11, "dave/11")
	add("serial150", f.ca, f.user, 150, "dave/150")
	add("serial3000", f.ca, f.user, 3000, "dave/3000")
	add("serial5001", f.ca, f.user, 5001, "dave/5001")
	add("serial20000", f.ca, f.user, 20000, "dave/20000")
	add("alice", f.ca, f.user, 77, "alice/1")
	add("alice-serial0", f.ca, f.user, 0, "alice/1")
	add("alice-prefix", f.ca, f.user, 77, "alice/10")
	add("other-ca-serial5", f.otherCA, f.user, 5, "dave/5")
	add("other-ca-alice", f.otherCA, f.user, 77, "alice/1")
	add("carol", f.otherCA, f.user, 78, "carol")
	add("other-key", f.ca, f.other, 9999, "erin/9999")
	return f
}

func (f *certFixture) names() []string {
	var n []string
	for name := range f.certs {
		n = append(n, name)
	}
	slices.Sort(n)
	return n
}

// checkAgainstSSHKeygen checks, for every certificate of the fixture, that
// the real ssh-keygen -Q, IsRevoked and the expectation all agree.
func (f *certFixture) checkAgainstSSHKeygen(t *testing.T, k *KRL, krlPath string, wantRevoked []string) {
	t.Helper()
	for _, name := range f.names() {
		want := slices.Contains(wantRevoked, name)
		if got := keygenRevoked(t, krlPath, f.paths[name]); got != want {
			t.Errorf("%s: ssh-keygen -Q says revoked=%v, want %v", name, got, want)
		}
		if got := k.IsRevoked(f.certs[name]); got != want {
			t.Errorf("%s: IsRevoked = %v, want %v", name, got, want)
		}
	}
}

func TestSSHKeygenReadsMarshal(t *testing.T) {
	dir := t.TempDir()
	f := newCertFixture(t, dir)
	otherFP := sha256.Sum256(f.other.Marshal())
	tests := []struct {
		name    string
		krl     *KRL
		revoked []string
	}{
		{name: "empty", krl: &KRL{}},
		{
			name:    "serials",
			krl:     &KRL{Certificates: []CertSection{{CA: f.ca.PublicKey(), Serials: []uint64{11, 5, 5}}}},
			revoked: []string{"serial5", "serial11"},
		},
		{
			name:    "key ID",
			krl:     &KRL{Certificates: []CertSection{{CA: f.ca.PublicKey(), KeyIDs: []string{"alice/1"}}}},
			revoked: []string{"alice", "alice-serial0"},
		},
		{
			name:    "ranges",
			krl:     &KRL{Certificates: []CertSection{{CA: f.ca.PublicKey(), SerialRanges: []SerialRange{{Min: 100, Max: 200}, {Min: 1000, Max: 5000}}}}},
			revoked: []string{"serial150", "serial3000"},
		},
		{
			name:    "wildcard CA",
			krl:     &KRL{Certificates: []CertSection{{KeyIDs: []string{"carol", "alice/1"}}, {Serials: []uint64{6}}}},
			revoked: []string{"carol", "alice", "alice-serial0", "other-ca-alice", "serial6"},
		},
		{
			name:    "explicit key",
			krl:     &KRL{Keys: []ssh.PublicKey{f.other}},
			revoked: []string{"other-key"},
		},
		{
			name:    "explicit CA key",
			krl:     &KRL{Keys: []ssh.PublicKey{f.otherCA.PublicKey()}},
			revoked: []string{"other-ca-serial5", "other-ca-alice", "carol"},
		},
		{
			name:    "SHA256 fingerprint",
			krl:     &KRL{SHA256Fingerprints: [][]byte{otherFP[:]}},
			revoked: []string{"other-key"},
		},
		{
			name: "everything",
			krl: &KRL{
				Version: 3, Comment: "all",
				Certificates: []CertSection{
					{CA: f.ca.PublicKey(), Serials: []uint64{5}, SerialRanges: []SerialRange{{Min: 2999, Max: 3001}}, KeyIDs: []string{"alice/1"}},
					{CA: f.otherCA.PublicKey(), Serials: []uint64{5}},
				},
				Keys: []ssh.PublicKey{f.other},
			},
			revoked: []string{"serial5", "serial3000", "alice", "alice-serial0", "other-ca-serial5", "other-key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.krl.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			path := writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "-")+".krl", b)
			f.checkAgainstSSHKeygen(t, tt.krl, path, tt.revoked)
		})
	}
}

func TestSSHKeygenListsGolden(t *testing.T) {
	out, err := exec.Command(sshKeygen(t), "-Q", "-l", "-f", filepath.Join("testdata", "small.krl")).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -Q -l: %v\n%s", err, out)
	}
	for _, want := range []string{"# KRL version 7", "# Comment: jumpgate test", "serial: 5\nserial: 7\nserial: 9\nserial: 100-200\nid: alice/1\nid: bob\n", "# Wildcard CA\nid: carol"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ssh-keygen -Q -l output lacks %q:\n%s", want, out)
		}
	}
}

// TestParseSSHKeygenKRL reads a KRL written by the real `ssh-keygen -k`,
// whose encoder picks serial lists, ranges and bitmaps by size.
func TestParseSSHKeygenKRL(t *testing.T) {
	dir := t.TempDir()
	f := newCertFixture(t, dir)
	caPub := writeFile(t, dir, "ca.pub", ssh.MarshalAuthorizedKey(f.ca.PublicKey()))
	spec := writeFile(t, dir, "spec", []byte(strings.Join([]string{
		"# revoked by the jumpgate test",
		"serial: 5", "serial: 7", "serial: 9", "serial: 11", // a bitmap
		"serial: 1000-5000", // a range
		"serial: 20000", "serial: 90000",
		"id: alice/1",
		"key: " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.other))),
	}, "\n")+"\n"))
	wildSpec := writeFile(t, dir, "wild", []byte("id: carol\n"))
	krlPath := filepath.Join(dir, "gen.krl")
	for _, args := range [][]string{
		{"-k", "-f", krlPath, "-z", "42", "-s", caPub, spec},
		{"-k", "-u", "-f", krlPath, "-s", "none", wildSpec},
	} {
		if out, err := exec.Command(sshKeygen(t), args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %q: %v\n%s", args, err, out)
		}
	}
	b, err := os.ReadFile(krlPath)
	if err != nil {
		t.Fatal(err)
	}
	if types := certSubsectionTypes(t, b); !slices.Contains(types, certSectionSerialBitmap) || !slices.Contains(types, certSectionSerialRange) || !slices.Contains(types, certSectionKeyID) {
		t.Fatalf("ssh-keygen wrote certificate subsections %#x; the test wants a bitmap, a range and key IDs", types)
	}
	k, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != 42 {
		t.Errorf("Version = %d, want 42", k.Version)
	}
	var scoped, wild *CertSection
	for i := range k.Certificates {
		s := &k.Certificates[i]
		switch {
		case s.CA == nil:
			wild = s
		case string(s.CA.Marshal()) == string(f.ca.PublicKey().Marshal()):
			scoped = s
		}
	}
	if scoped == nil || wild == nil {
		t.Fatalf("want a section for the CA and a wildcard one, got %s", describe(k))
	}
	allSerials := slices.Clone(scoped.Serials)
	for _, r := range scoped.SerialRanges {
		if r.Max-r.Min > 10000 {
			t.Fatalf("unexpected range %v", r)
		}
		for n := r.Min; n <= r.Max; n++ {
			allSerials = append(allSerials, n)
		}
	}
	slices.Sort(allSerials)
	allSerials = slices.Compact(allSerials)
	if len(allSerials) != 4+4001+2 || !slices.Contains(allSerials, 9) || !slices.Contains(allSerials, 4321) || !slices.Contains(allSerials, 90000) || slices.Contains(allSerials, 8) {
		t.Errorf("serials: %d of them, %v ...", len(allSerials), allSerials[:min(10, len(allSerials))])
	}
	if !slices.Equal(scoped.KeyIDs, []string{"alice/1"}) || !slices.Equal(wild.KeyIDs, []string{"carol"}) {
		t.Errorf("key IDs: %q and %q", scoped.KeyIDs, wild.KeyIDs)
	}
	if len(k.Keys) != 1 || string(k.Keys[0].Marshal()) != string(f.other.Marshal()) {
		t.Errorf("explicit keys: %s", describe(k))
	}
	want := []string{"serial5", "serial11", "serial3000", "serial20000", "alice", "alice-serial0", "carol", "other-key"}
	f.checkAgainstSSHKeygen(t, k, krlPath, want)

	// Re-encoded by Marshal, the KRL still means the same to ssh-keygen.
	again, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f.checkAgainstSSHKeygen(t, k, writeFile(t, dir, "again.krl", again), want)
}

// certSubsectionTypes lists the certificate subsection types in a KRL, in
// order, walking the wire format independently of Parse.
func certSubsectionTypes(t *testing.T, b []byte) []byte {
	t.Helper()
	r := &reader{buf: b, pos: len(magic) + 4 + 8 + 8 + 8}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.str("reserved")
	must(err)
	_, err = r.str("comment")
	must(err)
	var types []byte
	for !r.empty() {
		typ, err := r.byte("type")
		must(err)
		body, err := r.sub("body")
		must(err)
		if typ != sectionCertificates {
			continue
		}
		_, err = body.str("ca")
		must(err)
		_, err = body.str("reserved")
		must(err)
		for !body.empty() {
			st, err := body.byte("subtype")
			must(err)
			_, err = body.str("subbody")
			must(err)
			types = append(types, st)
		}
	}
	return types
}
