package krl

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// Parse decodes a KRL. It accepts what sshd accepts, with two exceptions
// taken from newer OpenSSH: signature sections are refused (OpenSSH 9.4 and
// later refuse them) and extension sections are understood (a critical one
// is refused, a non-critical one skipped). Serial lists, ranges and bitmaps
// are all read; bitmaps become Serials. Each certificate section on the wire
// becomes one CertSection, with its serials, ranges and key IDs sorted and
// deduplicated as Marshal writes them, and so are keys and fingerprints. At
// most MaxEntries entries are accepted. Errors wrap ErrBadMagic,
// ErrMalformed, ErrUnsupported or ErrTooLarge and name the byte offset.
func Parse(b []byte) (*KRL, error) {
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil, ErrBadMagic
	}
	// Keys parsed by x/crypto/ssh alias their input; own a copy so the
	// result does not change when the caller reuses b.
	b = bytes.Clone(b)
	p := &parser{budget: MaxEntries}
	r := &reader{buf: b[len(magic):], base: len(magic)}

	version, err := r.u32("format version")
	if err != nil {
		return nil, err
	}
	if version != formatVersion {
		return nil, fmt.Errorf("%w: format version %d (want %d)", ErrUnsupported, version, formatVersion)
	}
	k := &KRL{}
	if k.Version, err = r.u64("krl_version"); err != nil {
		return nil, err
	}
	off := r.offset()
	date, err := r.u64("generated_date")
	if err != nil {
		return nil, err
	}
	if date > math.MaxInt64 {
		return nil, r.malformed(off, "generated_date %d out of range", date)
	}
	if date != 0 {
		k.GeneratedAt = time.Unix(int64(date), 0).UTC()
	}
	if _, err := r.u64("flags"); err != nil { // none defined; OpenSSH ignores them
		return nil, err
	}
	if _, err := r.str("reserved"); err != nil {
		return nil, err
	}
	if k.Comment, err = r.cstring("comment"); err != nil {
		return nil, err
	}

	for !r.empty() {
		off := r.offset()
		typ, err := r.byte("section type")
		if err != nil {
			return nil, err
		}
		if typ == sectionSignature {
			return nil, fmt.Errorf("%w: signature section at offset %d (OpenSSH 9.4 and later refuse signed KRLs)", ErrUnsupported, off)
		}
		body, err := r.sub("section body")
		if err != nil {
			return nil, err
		}
		switch typ {
		case sectionCertificates:
			cs, err := p.certSection(body)
			if err != nil {
				return nil, err
			}
			k.Certificates = append(k.Certificates, cs)
		case sectionExplicitKey:
			if err := p.keys(body, k); err != nil {
				return nil, err
			}
		case sectionFingerprintSHA1:
			if k.SHA1Fingerprints, err = p.hashes(body, 20, k.SHA1Fingerprints); err != nil {
				return nil, err
			}
		case sectionFingerprintSHA256:
			if k.SHA256Fingerprints, err = p.hashes(body, 32, k.SHA256Fingerprints); err != nil {
				return nil, err
			}
		case sectionExtension:
			if err := extension(body); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: section type %d at offset %d", ErrUnsupported, typ, off)
		}
	}
	k.Keys = sortKeys(k.Keys)
	k.SHA1Fingerprints = sortBlobs(k.SHA1Fingerprints)
	k.SHA256Fingerprints = sortBlobs(k.SHA256Fingerprints)
	return k, nil
}

// parser carries the entry budget across sections.
type parser struct {
	budget int
}

func (p *parser) spend(off int) error {
	p.budget--
	if p.budget < 0 {
		return fmt.Errorf("%w: more than %d entries (at offset %d)", ErrTooLarge, MaxEntries, off)
	}
	return nil
}

func (p *parser) certSection(r *reader) (CertSection, error) {
	var cs CertSection
	off := r.offset()
	caBlob, err := r.str("CA key")
	if err != nil {
		return cs, err
	}
	if len(caBlob) > 0 {
		ca, err := ssh.ParsePublicKey(caBlob)
		if err != nil {
			return cs, r.malformed(off, "CA key: %v", err)
		}
		if _, ok := ca.(*ssh.Certificate); ok {
			return cs, r.malformed(off, "CA key is a certificate")
		}
		cs.CA = ca
	}
	if _, err := r.str("reserved"); err != nil {
		return cs, err
	}
	for !r.empty() {
		off := r.offset()
		typ, err := r.byte("certificate section type")
		if err != nil {
			return cs, err
		}
		sub, err := r.sub("certificate section body")
		if err != nil {
			return cs, err
		}
		switch typ {
		case certSectionSerialList:
			for !sub.empty() {
				off := sub.offset()
				n, err := sub.u64("serial")
				if err != nil {
					return cs, err
				}
				if n == 0 {
					return cs, sub.malformed(off, "serial 0 revoked")
				}
				if err := p.spend(off); err != nil {
					return cs, err
				}
				cs.Serials = append(cs.Serials, n)
			}
		case certSectionSerialRange:
			lo, err := sub.u64("serial_min")
			if err != nil {
				return cs, err
			}
			hi, err := sub.u64("serial_max")
			if err != nil {
				return cs, err
			}
			if lo == 0 || lo > hi {
				return cs, sub.malformed(off, "bad serial range %d-%d", lo, hi)
			}
			if err := p.spend(off); err != nil {
				return cs, err
			}
			cs.SerialRanges = append(cs.SerialRanges, SerialRange{Min: lo, Max: hi})
		case certSectionSerialBitmap:
			if cs.Serials, err = p.bitmap(sub, cs.Serials); err != nil {
				return cs, err
			}
		case certSectionKeyID:
			for !sub.empty() {
				off := sub.offset()
				id, err := sub.cstring("key ID")
				if err != nil {
					return cs, err
				}
				if err := p.spend(off); err != nil {
					return cs, err
				}
				cs.KeyIDs = append(cs.KeyIDs, id)
			}
		case certSectionExtension:
			if err := extension(sub); err != nil {
				return cs, err
			}
		default:
			return cs, fmt.Errorf("%w: certificate section type %#x at offset %d", ErrUnsupported, typ, off)
		}
		if !sub.empty() {
			return cs, sub.malformed(sub.offset(), "unparsed data at the end of certificate section type %#x", typ)
		}
	}
	cs.Serials = sortSerials(cs.Serials)
	cs.SerialRanges, _ = normalizeRanges(cs.SerialRanges) // already validated
	slices.Sort(cs.KeyIDs)
	cs.KeyIDs = slices.Compact(cs.KeyIDs)
	return cs, nil
}

// bitmap reads a KRL_SECTION_CERT_SERIAL_BITMAP body: a uint64 offset and
// an mpint whose bit N revokes serial offset+N.
func (p *parser) bitmap(r *reader, serials []uint64) ([]uint64, error) {
	lo, err := r.u64("serial_offset")
	if err != nil {
		return nil, err
	}
	off := r.offset()
	bits, err := r.str("revoked_keys_bitmap")
	if err != nil {
		return nil, err
	}
	// mpint rules as sshd applies them: not negative, at most
	// maxBitmapBytes significant bytes.
	if len(bits) > 0 && bits[0]&0x80 != 0 {
		return nil, r.malformed(off, "negative serial bitmap")
	}
	if len(bits) > maxBitmapBytes+1 || (len(bits) == maxBitmapBytes+1 && bits[0] != 0) {
		return nil, r.malformed(off, "serial bitmap of %d bytes is too large", len(bits))
	}
	for i := len(bits) - 1; i >= 0; i-- {
		byteIndex := uint64(len(bits) - 1 - i)
		for bit := uint64(0); bit < 8; bit++ {
			if bits[i]&(1<<bit) == 0 {
				continue
			}
			idx := byteIndex*8 + bit
			if idx > math.MaxUint64-lo {
				return nil, r.malformed(off, "serial bitmap wraps past 2^64")
			}
			n := lo + idx
			if n == 0 {
				return nil, r.malformed(off, "serial 0 revoked")
			}
			if err := p.spend(off); err != nil {
				return nil, err
			}
			serials = append(serials, n)
		}
	}
	return serials, nil
}

func (p *parser) keys(r *reader, k *KRL) error {
	for !r.empty() {
		off := r.offset()
		blob, err := r.str("public key")
		if err != nil {
			return err
		}
		key, err := ssh.ParsePublicKey(blob)
		if err != nil {
			return r.malformed(off, "explicit key: %v", err)
		}
		if _, ok := key.(*ssh.Certificate); ok {
			return r.malformed(off, "explicit key is a certificate")
		}
		if err := p.spend(off); err != nil {
			return err
		}
		k.Keys = append(k.Keys, key)
	}
	return nil
}

func (p *parser) hashes(r *reader, size int, list [][]byte) ([][]byte, error) {
	for !r.empty() {
		off := r.offset()
		h, err := r.str("key hash")
		if err != nil {
			return nil, err
		}
		if len(h) != size {
			return nil, r.malformed(off, "key hash of %d bytes, want %d", len(h), size)
		}
		if err := p.spend(off); err != nil {
			return nil, err
		}
		list = append(list, bytes.Clone(h))
	}
	return list, nil
}

// extension reads an extension section or subsection body: name, critical
// flag, contents. Critical extensions are refused since none is known.
func extension(r *reader) error {
	off := r.offset()
	name, err := r.cstring("extension name")
	if err != nil {
		return err
	}
	critical, err := r.byte("extension is_critical")
	if err != nil {
		return err
	}
	if _, err := r.str("extension contents"); err != nil {
		return err
	}
	if !r.empty() {
		return r.malformed(r.offset(), "unparsed data after extension %q", name)
	}
	if critical != 0 {
		return fmt.Errorf("%w: critical extension %q at offset %d", ErrUnsupported, name, off)
	}
	return nil
}

func sortSerials(s []uint64) []uint64 {
	slices.Sort(s)
	return slices.Compact(s)
}

// sortKeys sorts keys by wire encoding and drops duplicates.
func sortKeys(keys []ssh.PublicKey) []ssh.PublicKey {
	slices.SortFunc(keys, func(a, b ssh.PublicKey) int { return bytes.Compare(a.Marshal(), b.Marshal()) })
	return slices.CompactFunc(keys, func(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) })
}

// reader consumes SSH wire encodings from buf; base is the offset of buf[0]
// in the whole KRL, for error messages.
type reader struct {
	buf  []byte
	base int
	pos  int
}

func (r *reader) empty() bool    { return r.pos == len(r.buf) }
func (r *reader) offset() int    { return r.base + r.pos }
func (r *reader) remaining() int { return len(r.buf) - r.pos }

func (r *reader) malformed(off int, format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrMalformed, fmt.Sprintf(format, args...), off)
}

func (r *reader) need(n int, what string) error {
	if r.remaining() < n {
		return r.malformed(r.offset(), "truncated %s (need %d bytes, have %d)", what, n, r.remaining())
	}
	return nil
}

func (r *reader) byte(what string) (byte, error) {
	if err := r.need(1, what); err != nil {
		return 0, err
	}
	v := r.buf[r.pos]
	r.pos++
	return v, nil
}

func (r *reader) u32(what string) (uint32, error) {
	if err := r.need(4, what); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint32(r.buf[r.pos:])
	r.pos += 4
	return v, nil
}

func (r *reader) u64(what string) (uint64, error) {
	if err := r.need(8, what); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint64(r.buf[r.pos:])
	r.pos += 8
	return v, nil
}

// str returns a string's bytes, aliasing the input.
func (r *reader) str(what string) ([]byte, error) {
	off := r.offset()
	n, err := r.u32(what + " length")
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(r.remaining()) {
		return nil, r.malformed(off, "%s of %d bytes overruns its container (%d bytes left)", what, n, r.remaining())
	}
	v := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return v, nil
}

// cstring is a string that must not contain NUL, as sshd requires.
func (r *reader) cstring(what string) (string, error) {
	off := r.offset()
	b, err := r.str(what)
	if err != nil {
		return "", err
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return "", r.malformed(off, "%s contains a NUL byte", what)
	}
	return string(b), nil
}

// sub returns a reader over the next string.
func (r *reader) sub(what string) (*reader, error) {
	off := r.offset() + 4
	b, err := r.str(what)
	if err != nil {
		return nil, err
	}
	return &reader{buf: b, base: off}, nil
}
