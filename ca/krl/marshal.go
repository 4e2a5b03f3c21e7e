package krl

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Marshal encodes k in the OpenSSH KRL format. Serials, serial ranges, key
// IDs, keys and fingerprints are written sorted and without duplicates;
// certificate sections keep their order. Serial lists use
// KRL_SECTION_CERT_SERIAL_LIST and each range one KRL_SECTION_CERT_SERIAL_RANGE.
// The result carries no signature. Marshal does not modify k.
func (k *KRL) Marshal() ([]byte, error) {
	if k == nil {
		k = &KRL{}
	}
	var date uint64
	if !k.GeneratedAt.IsZero() {
		if k.GeneratedAt.Unix() < 0 {
			return nil, fmt.Errorf("%w: generated date %s is before 1970", ErrInvalid, k.GeneratedAt)
		}
		date = uint64(k.GeneratedAt.Unix())
	}
	if strings.IndexByte(k.Comment, 0) >= 0 {
		return nil, fmt.Errorf("%w: comment contains a NUL byte", ErrInvalid)
	}

	w := &writer{}
	w.raw([]byte(magic))
	w.u32(formatVersion)
	w.u64(k.Version)
	w.u64(date)
	w.u64(0)   // flags: none defined
	w.str(nil) // reserved
	w.str([]byte(k.Comment))

	for i := range k.Certificates {
		body, err := k.Certificates[i].marshal()
		if err != nil {
			return nil, fmt.Errorf("%w: certificate section %d: %s", ErrInvalid, i, err)
		}
		w.section(sectionCertificates, body)
	}

	keys, err := normalizeKeys(k.Keys)
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		sw := &writer{}
		for _, blob := range keys {
			sw.str(blob)
		}
		w.section(sectionExplicitKey, sw.buf)
	}
	for _, fp := range []struct {
		typ  byte
		size int
		list [][]byte
	}{
		{sectionFingerprintSHA1, 20, k.SHA1Fingerprints},
		{sectionFingerprintSHA256, 32, k.SHA256Fingerprints},
	} {
		list, err := normalizeFingerprints(fp.list, fp.size)
		if err != nil {
			return nil, err
		}
		if len(list) == 0 {
			continue
		}
		sw := &writer{}
		for _, h := range list {
			sw.str(h)
		}
		w.section(fp.typ, sw.buf)
	}
	if w.err != nil {
		return nil, w.err
	}
	return w.buf, nil
}

// marshal encodes the body of a KRL_SECTION_CERTIFICATES section. Its errors
// are bare descriptions; Marshal wraps them.
func (s *CertSection) marshal() ([]byte, error) {
	w := &writer{}
	if s.CA == nil {
		w.str(nil)
	} else {
		if _, ok := s.CA.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("CA key is a certificate")
		}
		w.str(s.CA.Marshal())
	}
	w.str(nil) // reserved

	serials, err := normalizeSerials(s.Serials)
	if err != nil {
		return nil, err
	}
	if len(serials) > 0 {
		sw := &writer{}
		for _, n := range serials {
			sw.u64(n)
		}
		w.section(certSectionSerialList, sw.buf)
	}
	ranges, err := normalizeRanges(s.SerialRanges)
	if err != nil {
		return nil, err
	}
	for _, r := range ranges {
		sw := &writer{}
		sw.u64(r.Min)
		sw.u64(r.Max)
		w.section(certSectionSerialRange, sw.buf)
	}
	ids, err := normalizeKeyIDs(s.KeyIDs)
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		sw := &writer{}
		for _, id := range ids {
			sw.str([]byte(id))
		}
		w.section(certSectionKeyID, sw.buf)
	}
	if w.err != nil {
		return nil, w.err
	}
	return w.buf, nil
}

func normalizeSerials(in []uint64) ([]uint64, error) {
	out := slices.Clone(in)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 0 && out[0] == 0 {
		return nil, fmt.Errorf("serial 0 cannot be revoked")
	}
	return out, nil
}

func normalizeRanges(in []SerialRange) ([]SerialRange, error) {
	out := slices.Clone(in)
	for _, r := range out {
		if r.Min == 0 {
			return nil, fmt.Errorf("serial range %d-%d includes serial 0", r.Min, r.Max)
		}
		if r.Min > r.Max {
			return nil, fmt.Errorf("serial range %d-%d is reversed", r.Min, r.Max)
		}
	}
	slices.SortFunc(out, func(a, b SerialRange) int {
		if a.Min != b.Min {
			return cmpU64(a.Min, b.Min)
		}
		return cmpU64(a.Max, b.Max)
	})
	return slices.Compact(out), nil
}

func normalizeKeyIDs(in []string) ([]string, error) {
	out := slices.Clone(in)
	for _, id := range out {
		if strings.IndexByte(id, 0) >= 0 {
			return nil, fmt.Errorf("key ID %q contains a NUL byte", id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// normalizeKeys returns the sorted, deduplicated plain-key blobs of keys.
func normalizeKeys(keys []ssh.PublicKey) ([][]byte, error) {
	out := make([][]byte, 0, len(keys))
	for i, key := range keys {
		if key == nil {
			return nil, fmt.Errorf("%w: explicit key %d is nil", ErrInvalid, i)
		}
		out = append(out, plainBlob(key))
	}
	return sortBlobs(out), nil
}

func normalizeFingerprints(in [][]byte, size int) ([][]byte, error) {
	for i, h := range in {
		if len(h) != size {
			return nil, fmt.Errorf("%w: fingerprint %d is %d bytes, want %d", ErrInvalid, i, len(h), size)
		}
	}
	return sortBlobs(slices.Clone(in)), nil
}

// sortBlobs sorts in place in OpenSSH's blob order (memcmp, then shorter
// first; for equal-length hashes that is big-endian numeric order) and drops
// duplicates.
func sortBlobs(b [][]byte) [][]byte {
	slices.SortFunc(b, bytes.Compare)
	return slices.CompactFunc(b, bytes.Equal)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// writer appends SSH wire encodings; the first error sticks.
type writer struct {
	buf []byte
	err error
}

func (w *writer) raw(b []byte) { w.buf = append(w.buf, b...) }
func (w *writer) u32(v uint32) { w.buf = binary.BigEndian.AppendUint32(w.buf, v) }
func (w *writer) u64(v uint64) { w.buf = binary.BigEndian.AppendUint64(w.buf, v) }

func (w *writer) str(b []byte) {
	if uint64(len(b)) > math.MaxUint32 {
		if w.err == nil {
			w.err = fmt.Errorf("%w: a string of %d bytes does not fit the format", ErrInvalid, len(b))
		}
		return
	}
	w.u32(uint32(len(b)))
	w.raw(b)
}

func (w *writer) section(typ byte, body []byte) {
	w.buf = append(w.buf, typ)
	w.str(body)
}
