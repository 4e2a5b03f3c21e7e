package localshell

import (
	"errors"
	"reflect"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func ptyPayload(term string, cols, rows uint32, modes []byte) []byte {
	return gossh.Marshal(&struct {
		Term                      string
		Cols, Rows, Width, Height uint32
		Modes                     string
	}{term, cols, rows, 640, 480, string(modes)})
}

func TestParsePtyRequest(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    ptyRequest
		wantErr bool
	}{
		{
			name:    "xterm with modes",
			payload: ptyPayload("xterm", 80, 24, []byte{53, 0, 0, 0, 1, 128, 0, 0, 0x96, 0, 0}),
			want:    ptyRequest{Term: "xterm", Win: window{80, 24, 640, 480}, Modes: []termMode{{53, 1}, {128, 38400}}},
		},
		{
			name:    "opcode 160 stops the modes",
			payload: ptyPayload("vt100", 80, 24, []byte{53, 0, 0, 0, 0, 160, 1, 2, 54, 0, 0, 0, 1}),
			want:    ptyRequest{Term: "vt100", Win: window{80, 24, 640, 480}, Modes: []termMode{{53, 0}}},
		},
		{
			name:    "huge size clamped",
			payload: ptyPayload("xterm", 1<<20, 70000, nil),
			want:    ptyRequest{Term: "xterm", Win: window{0xffff, 0xffff, 640, 480}},
		},
		{name: "truncated mode", payload: ptyPayload("xterm", 80, 24, []byte{53, 0, 0}), wantErr: true},
		{name: "TERM with NUL", payload: ptyPayload("xt\x00erm", 80, 24, nil), wantErr: true},
		{name: "TERM with =", payload: ptyPayload("A=B", 80, 24, nil), wantErr: true},
		{name: "short payload", payload: []byte{0, 0, 0, 5, 'x'}, wantErr: true},
		{name: "trailing data", payload: append(ptyPayload("xterm", 80, 24, nil), 1), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePtyRequest(tc.payload)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, errBadPayload) {
					t.Fatalf("err = %v, not errBadPayload", err)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEnvAllowed(t *testing.T) {
	tests := []struct {
		name, value string
		want        bool
	}{
		{"LANG", "en_US.UTF-8", true},
		{"LC_ALL", "C", true},
		{"LC_MESSAGES", "C", true},
		{"LC_", "C", false},
		{"LC_all", "C", false},
		{"LC_ALL=X", "C", false},
		{"TZ", "Europe/Paris", true},
		{"COLORTERM", "truecolor", true},
		{"TERM", "xterm", true},
		{"LANG", "C\x00X", false},
		{"FOO", "bar", false},
		{"LD_PRELOAD", "/x.so", false},
		{"BASH_ENV", "/x", false},
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := envAllowed(tc.name, tc.value); got != tc.want {
				t.Fatalf("envAllowed(%q, %q) = %v, want %v", tc.name, tc.value, got, tc.want)
			}
		})
	}
}

func TestParseSmallRequests(t *testing.T) {
	w, err := parseWindowChange(gossh.Marshal(&struct{ C, R, W, H uint32 }{132, 50, 0, 0}))
	if err != nil || w != (window{Cols: 132, Rows: 50}) {
		t.Fatalf("window-change = %+v, %v", w, err)
	}
	if _, err := parseWindowChange([]byte{0, 0, 0, 1}); err == nil {
		t.Fatal("short window-change accepted")
	}
	if cmd, err := parseCommand(gossh.Marshal(&struct{ S string }{"echo hi"})); err != nil || cmd != "echo hi" {
		t.Fatalf("exec = %q, %v", cmd, err)
	}
	if _, err := parseCommand(gossh.Marshal(&struct{ S string }{"echo\x00hi"})); err == nil {
		t.Fatal("command with NUL accepted")
	}
	if n, v, err := parseEnv(gossh.Marshal(&struct{ N, V string }{"LANG", "C"})); err != nil || n != "LANG" || v != "C" {
		t.Fatalf("env = %q %q %v", n, v, err)
	}
}

// FuzzParseRequest feeds untrusted request payloads to every parser: none
// may panic, and what the pty-req parser accepts survives a round trip.
func FuzzParseRequest(f *testing.F) {
	f.Add("pty-req", ptyPayload("xterm-256color", 80, 24, []byte{53, 0, 0, 0, 1, 0}))
	f.Add("pty-req", ptyPayload("vt100", 0, 0, []byte{160}))
	f.Add("window-change", gossh.Marshal(&struct{ C, R, W, H uint32 }{132, 50, 0, 0}))
	f.Add("env", gossh.Marshal(&struct{ N, V string }{"LC_ALL", "C"}))
	f.Add("exec", gossh.Marshal(&struct{ S string }{"echo hi"}))
	f.Add("signal", gossh.Marshal(&struct{ S string }{"TERM"}))
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		switch typ {
		case "pty-req":
			p, err := parsePtyRequest(payload)
			if err != nil {
				return
			}
			again, err := parsePtyRequest(ptyPayloadFrom(p))
			if err != nil || !reflect.DeepEqual(p, again) {
				t.Fatalf("round trip: %+v → %+v, %v", p, again, err)
			}
		case "window-change":
			_, _ = parseWindowChange(payload)
		case "env":
			if n, v, err := parseEnv(payload); err == nil {
				_ = envAllowed(n, v)
			}
		default:
			_, _ = parseCommand(payload)
			_, _ = parseTermModes(payload)
		}
	})
}

func ptyPayloadFrom(p ptyRequest) []byte {
	return gossh.Marshal(&struct {
		Term                      string
		Cols, Rows, Width, Height uint32
		Modes                     string
	}{p.Term, uint32(p.Win.Cols), uint32(p.Win.Rows), uint32(p.Win.Width), uint32(p.Win.Height), string(encodeTermModes(p.Modes))})
}
