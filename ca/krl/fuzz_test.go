package krl

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics, fails only with this package's
// sentinels, and that whatever it accepts survives Marshal and Parse again
// unchanged. The seed corpus in testdata/fuzz/FuzzParse holds KRLs from
// Marshal and from ssh-keygen (serial bitmaps and ranges) and broken ones.
func FuzzParse(f *testing.F) {
	f.Add(header())
	f.Add(build(certs(sect(certSectionSerialBitmap, u64s(5), strs("\x01\x05")))))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrBadMagic) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Parse error wraps no sentinel: %v", err)
			}
			return
		}
		out, err := k.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed KRL: %v\n%s", err, describe(k))
		}
		k2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(data))): %v", err)
		}
		if describe(k) != describe(k2) {
			t.Fatalf("round trip changed the KRL:\n%s\n%s", describe(k), describe(k2))
		}
		out2, err := k2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not stable:\n%x\n%x", out, out2)
		}
	})
}
