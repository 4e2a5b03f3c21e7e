package termline

import "testing"

func TestClamp(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"text untouched", []string{"ls 123456789"}, "ls 123456789"},
		{"short parameters untouched", []string{"\x1b[12;345H"}, "\x1b[12;345H"},
		{"long repeat count", []string{"a\x1b[999999999b"}, "a\x1b[999b"},
		{"every parameter", []string{"\x1b[12345;67890H"}, "\x1b[123;678H"},
		{"private modes untouched", []string{"\x1b[?1049h\x1b[?2004h"}, "\x1b[?1049h\x1b[?2004h"},
		{"split across writes", []string{"a\x1b[99", "9999b"}, "a\x1b[999b"},
		{"C1 CSI", []string{"a\x9b1000000b"}, "a\x9b100b"},
		{"UTF-8 continuation byte is not C1", []string{"\xe2\x80\x9b1234567"}, "\xe2\x80\x9b1234567"},
		{"sequence ends", []string{"\x1b[1m12345678"}, "\x1b[1m12345678"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c clampState
			got := ""
			for _, ch := range tc.chunks {
				got += string(c.clamp([]byte(ch)))
			}
			if got != tc.want {
				t.Fatalf("clamp = %q, want %q", got, tc.want)
			}
		})
	}
}
