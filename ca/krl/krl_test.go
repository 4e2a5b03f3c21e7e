package krl

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// smallKRL is the golden KRL: fixed keys, one CA-scoped section with serials,
// a range and key IDs, a wildcard section and an explicitly revoked key.
func smallKRL(t testing.TB) *KRL {
	ca := seededSigner(t, 1).PublicKey()
	user := seededSigner(t, 2).PublicKey()
	return &KRL{
		Version:     7,
		GeneratedAt: time.Unix(1700000000, 0).UTC(),
		Comment:     "jumpgate test",
		Certificates: []CertSection{
			{CA: ca, Serials: []uint64{9, 5, 5, 7}, SerialRanges: []SerialRange{{Min: 100, Max: 200}}, KeyIDs: []string{"bob", "alice/1"}},
			{KeyIDs: []string{"carol"}},
		},
		Keys: []ssh.PublicKey{user},
	}
}

func TestMarshalGolden(t *testing.T) {
	got, err := smallKRL(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "small.krl")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal differs from %s:\n got %x\nwant %x", golden, got, want)
	}
	// The header, spelled out from PROTOCOL.krl, so the golden file cannot
	// drift unnoticed with -update.
	var hdr []byte
	hdr = append(hdr, "SSHKRL\n\x00"...)
	hdr = binary.BigEndian.AppendUint32(hdr, 1)          // format version
	hdr = binary.BigEndian.AppendUint64(hdr, 7)          // krl_version
	hdr = binary.BigEndian.AppendUint64(hdr, 1700000000) // generated_date
	hdr = binary.BigEndian.AppendUint64(hdr, 0)          // flags
	hdr = binary.BigEndian.AppendUint32(hdr, 0)          // reserved
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len("jumpgate test")))
	hdr = append(hdr, "jumpgate test"...)
	hdr = append(hdr, sectionCertificates)
	if !bytes.HasPrefix(got, hdr) {
		t.Fatalf("header:\n got %x\nwant %x", got[:min(len(got), len(hdr))], hdr)
	}
	// The first certificate section: CA, reserved, then a serial list with
	// 5, 7, 9 sorted and deduplicated.
	var list []byte
	list = append(list, certSectionSerialList)
	list = binary.BigEndian.AppendUint32(list, 24)
	for _, n := range []uint64{5, 7, 9} {
		list = binary.BigEndian.AppendUint64(list, n)
	}
	if !bytes.Contains(got, list) {
		t.Fatalf("serial list %x not in %x", list, got)
	}
}

func TestRoundTrip(t *testing.T) {
	ca := seededSigner(t, 1).PublicKey()
	ca2 := seededSigner(t, 3).PublicKey()
	user := seededSigner(t, 2).PublicKey()
	userCert := signCert(t, seededSigner(t, 1), user, 4, "x")
	fp := sha256.Sum256(seededSigner(t, 4).PublicKey().Marshal())
	tests := []struct {
		name string
		in   *KRL
		want *KRL // nil: same as in
	}{
		{name: "empty", in: &KRL{}},
		{name: "header only", in: &KRL{Version: 1<<64 - 1, GeneratedAt: time.Unix(1, 0).UTC(), Comment: "c"}},
		{name: "small", in: smallKRL(t), want: func() *KRL {
			k := smallKRL(t)
			k.Certificates[0].Serials = []uint64{5, 7, 9}
			k.Certificates[0].KeyIDs = []string{"alice/1", "bob"}
			return k
		}()},
		{
			name: "normalised",
			in: &KRL{Certificates: []CertSection{{
				CA:           ca,
				Serials:      []uint64{3, 1, 3, 1<<64 - 1},
				SerialRanges: []SerialRange{{Min: 10, Max: 20}, {Min: 2, Max: 2}, {Min: 10, Max: 20}},
				KeyIDs:       []string{"b", "a", "b", ""},
			}}},
			want: &KRL{Certificates: []CertSection{{
				CA:           ca,
				Serials:      []uint64{1, 3, 1<<64 - 1},
				SerialRanges: []SerialRange{{Min: 2, Max: 2}, {Min: 10, Max: 20}},
				KeyIDs:       []string{"", "a", "b"},
			}}},
		},
		{name: "two CAs and wildcard", in: &KRL{Certificates: []CertSection{{CA: ca, Serials: []uint64{1}}, {CA: ca2, KeyIDs: []string{"k"}}, {}}}},
		{
			name: "certificate given as explicit key",
			in:   &KRL{Keys: []ssh.PublicKey{userCert, user}},
			want: &KRL{Keys: []ssh.PublicKey{user}},
		},
		{name: "fingerprints", in: &KRL{SHA256Fingerprints: [][]byte{fp[:]}, SHA1Fingerprints: [][]byte{bytes.Repeat([]byte{7}, 20)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := describe(tt.in)
			b, err := tt.in.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if after := describe(tt.in); after != before {
				t.Fatalf("Marshal modified its receiver:\n%s\n%s", before, after)
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == nil {
				want = tt.in
			}
			if describe(got) != describe(want) {
				t.Fatalf("round trip:\n got %s\nwant %s", describe(got), describe(want))
			}
			b2, err := got.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, b2) {
				t.Fatalf("Marshal(Parse(b)) != b:\n%x\n%x", b2, b)
			}
		})
	}
}

func TestMarshalInvalid(t *testing.T) {
	ca := seededSigner(t, 1)
	cert := signCert(t, ca, seededSigner(t, 2).PublicKey(), 1, "x")
	tests := []struct {
		name string
		in   *KRL
	}{
		{"serial 0", &KRL{Certificates: []CertSection{{Serials: []uint64{4, 0}}}}},
		{"range from 0", &KRL{Certificates: []CertSection{{SerialRanges: []SerialRange{{Min: 0, Max: 3}}}}}},
		{"reversed range", &KRL{Certificates: []CertSection{{SerialRanges: []SerialRange{{Min: 5, Max: 3}}}}}},
		{"NUL in key ID", &KRL{Certificates: []CertSection{{KeyIDs: []string{"a\x00b"}}}}},
		{"certificate as CA", &KRL{Certificates: []CertSection{{CA: cert, Serials: []uint64{1}}}}},
		{"NUL in comment", &KRL{Comment: "a\x00"}},
		{"nil key", &KRL{Keys: []ssh.PublicKey{nil}}},
		{"short SHA256", &KRL{SHA256Fingerprints: [][]byte{make([]byte, 20)}}},
		{"long SHA1", &KRL{SHA1Fingerprints: [][]byte{make([]byte, 32)}}},
		{"before 1970", &KRL{GeneratedAt: time.Unix(-1, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.in.Marshal()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Marshal = %x, %v; want ErrInvalid", b, err)
			}
			if !strings.HasPrefix(err.Error(), "krl: ") {
				t.Fatalf("error %q does not start with the package name", err)
			}
		})
	}
}

// header returns a valid KRL header; sections are appended to it.
func header() []byte {
	w := &writer{}
	w.raw([]byte(magic))
	w.u32(formatVersion)
	w.u64(1)
	w.u64(0)
	w.u64(0)
	w.str(nil)
	w.str(nil)
	return w.buf
}

// build appends sections to a valid header.
func build(sections ...[]byte) []byte {
	b := header()
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

func sect(typ byte, parts ...[]byte) []byte {
	w := &writer{}
	w.section(typ, bytes.Join(parts, nil))
	return w.buf
}

func u64s(v ...uint64) []byte {
	w := &writer{}
	for _, n := range v {
		w.u64(n)
	}
	return w.buf
}

func strs(v ...string) []byte {
	w := &writer{}
	for _, s := range v {
		w.str([]byte(s))
	}
	return w.buf
}

func certs(sub ...[]byte) []byte {
	return sect(sectionCertificates, append([][]byte{strs("", "")}, sub...)...)
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		check   func(t *testing.T, k *KRL)
	}{
		{name: "nil", in: nil, wantErr: ErrBadMagic},
		{name: "bad magic", in: append([]byte("SSHKRL\n\x01"), header()[8:]...), wantErr: ErrBadMagic},
		{name: "truncated header", in: header()[:20], wantErr: ErrMalformed},
		{name: "format version 2", in: func() []byte { b := header(); b[11] = 2; return b }(), wantErr: ErrUnsupported},
		{name: "NUL in comment", in: append(header()[:len(header())-4], 0, 0, 0, 1, 0), wantErr: ErrMalformed},
		{name: "header only", in: header(), check: func(t *testing.T, k *KRL) {
			if k.Version != 1 || !k.GeneratedAt.IsZero() || len(k.Certificates) != 0 {
				t.Fatalf("got %s", describe(k))
			}
		}},
		{name: "date beyond int64", in: func() []byte { b := header(); b[20] = 0x80; return b }(), wantErr: ErrMalformed},
		{name: "unknown section", in: build(sect(9)), wantErr: ErrUnsupported},
		{name: "signature section", in: build(sect(sectionSignature, strs("k")), strs("sig")), wantErr: ErrUnsupported},
		{name: "section overruns", in: append(header(), sectionCertificates, 0, 0, 1, 0, 0), wantErr: ErrMalformed},
		{name: "missing section body", in: append(header(), sectionCertificates), wantErr: ErrMalformed},
		{name: "serial list", in: build(certs(sect(certSectionSerialList, u64s(9, 3, 9)))), check: func(t *testing.T, k *KRL) {
			if got := describe(k); !strings.Contains(got, "ca=* serials=[3 9]") {
				t.Fatalf("got %s", got)
			}
		}},
		{name: "serial list with 0", in: build(certs(sect(certSectionSerialList, u64s(0)))), wantErr: ErrMalformed},
		{name: "serial list ragged", in: build(certs(sect(certSectionSerialList, u64s(1)[:7]))), wantErr: ErrMalformed},
		{name: "range", in: build(certs(sect(certSectionSerialRange, u64s(5, 8)))), check: func(t *testing.T, k *KRL) {
			if r := k.Certificates[0].SerialRanges; len(r) != 1 || r[0] != (SerialRange{5, 8}) {
				t.Fatalf("ranges %v", r)
			}
		}},
		{name: "reversed range", in: build(certs(sect(certSectionSerialRange, u64s(8, 5)))), wantErr: ErrMalformed},
		{name: "range from 0", in: build(certs(sect(certSectionSerialRange, u64s(0, 5)))), wantErr: ErrMalformed},
		{name: "range with trailing data", in: build(certs(sect(certSectionSerialRange, u64s(1, 5, 6)))), wantErr: ErrMalformed},
		{name: "bitmap", in: build(certs(sect(certSectionSerialBitmap, u64s(5), strs("\x01\x05")))), check: func(t *testing.T, k *KRL) {
			// 0x0105: bits 0, 2 and 8 → serials 5, 7, 13.
			if s := k.Certificates[0].Serials; len(s) != 3 || s[0] != 5 || s[1] != 7 || s[2] != 13 {
				t.Fatalf("serials %v", s)
			}
		}},
		{name: "bitmap leading zero", in: build(certs(sect(certSectionSerialBitmap, u64s(1), strs("\x00\x80")))), check: func(t *testing.T, k *KRL) {
			if s := k.Certificates[0].Serials; len(s) != 1 || s[0] != 8 {
				t.Fatalf("serials %v", s)
			}
		}},
		{name: "bitmap negative", in: build(certs(sect(certSectionSerialBitmap, u64s(1), strs("\x80")))), wantErr: ErrMalformed},
		{name: "bitmap serial 0", in: build(certs(sect(certSectionSerialBitmap, u64s(0), strs("\x01")))), wantErr: ErrMalformed},
		{name: "bitmap wraps", in: build(certs(sect(certSectionSerialBitmap, u64s(1<<64-1), strs("\x02")))), wantErr: ErrMalformed},
		{name: "bitmap too large", in: build(certs(sect(certSectionSerialBitmap, u64s(1), strs("\x01"+strings.Repeat("\x00", maxBitmapBytes))))), wantErr: ErrMalformed},
		{name: "key IDs", in: build(certs(sect(certSectionKeyID, strs("b", "a", "b")))), check: func(t *testing.T, k *KRL) {
			if ids := k.Certificates[0].KeyIDs; len(ids) != 2 || ids[0] != "a" || ids[1] != "b" {
				t.Fatalf("ids %q", ids)
			}
		}},
		{name: "key ID with NUL", in: build(certs(sect(certSectionKeyID, strs("a\x00")))), wantErr: ErrMalformed},
		{name: "unknown cert section", in: build(certs(sect(0x30))), wantErr: ErrUnsupported},
		{name: "bad CA key", in: build(sect(sectionCertificates, strs("nonsense", ""))), wantErr: ErrMalformed},
		{name: "missing reserved", in: build(sect(sectionCertificates, strs(""))), wantErr: ErrMalformed},
		{name: "bad explicit key", in: build(sect(sectionExplicitKey, strs("junk"))), wantErr: ErrMalformed},
		{name: "short SHA256", in: build(sect(sectionFingerprintSHA256, strs(strings.Repeat("x", 31)))), wantErr: ErrMalformed},
		{name: "SHA1", in: build(sect(sectionFingerprintSHA1, strs(strings.Repeat("x", 20)))), check: func(t *testing.T, k *KRL) {
			if len(k.SHA1Fingerprints) != 1 {
				t.Fatalf("got %s", describe(k))
			}
		}},
		{name: "non-critical extension", in: build(sect(sectionExtension, strs("x@example.com"), []byte{0}, strs("data"))), check: func(t *testing.T, k *KRL) {}},
		{name: "critical extension", in: build(sect(sectionExtension, strs("x@example.com"), []byte{1}, strs("data"))), wantErr: ErrUnsupported},
		{name: "extension trailing data", in: build(sect(sectionExtension, strs("x"), []byte{0}, strs(""), []byte{0})), wantErr: ErrMalformed},
		{name: "non-critical cert extension", in: build(certs(sect(certSectionExtension, strs("x"), []byte{0}, strs("")))), check: func(t *testing.T, k *KRL) {}},
		{name: "critical cert extension", in: build(certs(sect(certSectionExtension, strs("x"), []byte{1}, strs("")))), wantErr: ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Parse(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse = %v, %v; want %v", k, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "krl: ") {
					t.Fatalf("error %q does not start with the package name", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, k)
		})
	}
}

func TestParseEntryLimit(t *testing.T) {
	serials := make([]uint64, MaxEntries+1)
	for i := range serials {
		serials[i] = uint64(i + 1)
	}
	if _, err := Parse(build(certs(sect(certSectionSerialList, u64s(serials[:MaxEntries]...))))); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	_, err := Parse(build(certs(sect(certSectionSerialList, u64s(serials...)))))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v, want ErrTooLarge", err)
	}
}

func TestParseDoesNotAliasInput(t *testing.T) {
	b, err := smallKRL(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	k, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	before := describe(k)
	for i := range b {
		b[i] = 0xff
	}
	if after := describe(k); after != before {
		t.Fatalf("parsed KRL changed with its input:\n%s\n%s", before, after)
	}
}

func TestIsRevoked(t *testing.T) {
	ca, otherCA := seededSigner(t, 1), seededSigner(t, 3)
	user, otherUser := seededSigner(t, 2).PublicKey(), seededSigner(t, 4).PublicKey()
	userFP := sha256.Sum256(user.Marshal())
	k := &KRL{
		Certificates: []CertSection{
			{CA: ca.PublicKey(), Serials: []uint64{5}, SerialRanges: []SerialRange{{Min: 100, Max: 200}}, KeyIDs: []string{"alice/1"}},
			{KeyIDs: []string{"carol"}},
		},
	}
	tests := []struct {
		name string
		krl  *KRL
		cert *ssh.Certificate
		want bool
	}{
		{"serial", k, signCert(t, ca, otherUser, 5, "x"), true},
		{"other serial", k, signCert(t, ca, otherUser, 6, "x"), false},
		{"range low end", k, signCert(t, ca, otherUser, 100, "x"), true},
		{"range high end", k, signCert(t, ca, otherUser, 200, "x"), true},
		{"past range", k, signCert(t, ca, otherUser, 201, "x"), false},
		{"serial from other CA", k, signCert(t, otherCA, otherUser, 5, "x"), false},
		{"key ID", k, signCert(t, ca, otherUser, 77, "alice/1"), true},
		{"key ID is exact", k, signCert(t, ca, otherUser, 77, "alice/10"), false},
		{"key ID from other CA", k, signCert(t, otherCA, otherUser, 77, "alice/1"), false},
		{"wildcard key ID from any CA", k, signCert(t, otherCA, otherUser, 77, "carol"), true},
		{"serial 0 never matches by serial", &KRL{Certificates: []CertSection{{SerialRanges: []SerialRange{{Min: 1, Max: 1<<64 - 1}}}}}, signCert(t, ca, otherUser, 0, "x"), false},
		{"explicit key", &KRL{Keys: []ssh.PublicKey{user}}, signCert(t, ca, user, 1, "x"), true},
		{"explicit CA key", &KRL{Keys: []ssh.PublicKey{ca.PublicKey()}}, signCert(t, ca, otherUser, 1, "x"), true},
		{"SHA256 of key", &KRL{SHA256Fingerprints: [][]byte{userFP[:]}}, signCert(t, ca, user, 1, "x"), true},
		{"SHA256 other key", &KRL{SHA256Fingerprints: [][]byte{userFP[:]}}, signCert(t, ca, otherUser, 1, "x"), false},
		{"empty KRL", &KRL{}, signCert(t, ca, user, 5, "alice/1"), false},
		{"nil KRL", nil, signCert(t, ca, user, 5, "alice/1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.krl.IsRevoked(tt.cert); got != tt.want {
				t.Fatalf("IsRevoked = %v, want %v", got, tt.want)
			}
		})
	}
}
