package kube

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// wsFrame builds one WebSocket frame; a non-nil mask masks the payload.
func wsFrame(fin bool, opcode byte, mask []byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	var m byte
	if mask != nil {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, m|byte(n))
	case n < 1<<16:
		out = append(out, m|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if mask != nil {
		out = append(out, mask...)
		for i, c := range payload {
			out = append(out, c^mask[i%4])
		}
		return out
	}
	return append(out, payload...)
}

func chanMsg(ch byte, data string) []byte { return append([]byte{ch}, data...) }

type emitted struct {
	ch   byte
	data string
}

// collect runs d over the stream fed in pieces of size step (0: whole) and
// returns what it emitted per channel, concatenated.
func collect(d *wsDemux, stream []byte, step int) (map[byte]string, []emitted, error) {
	got := map[byte]string{}
	var msgs []emitted
	d.emit = func(ch byte, data []byte) {
		got[ch] += string(data)
		msgs = append(msgs, emitted{ch, string(data)})
	}
	if step == 0 {
		step = len(stream) + 1
	}
	var err error
	for len(stream) > 0 && err == nil {
		n := min(step, len(stream))
		piece := bytes.Clone(stream[:n])
		err = d.Feed(piece)
		if !bytes.Equal(piece, stream[:n]) {
			return nil, nil, errors.New("Feed changed its input")
		}
		stream = stream[n:]
	}
	return got, msgs, err
}

func TestWSDemux(t *testing.T) {
	mask := []byte{0x12, 0x34, 0x56, 0x78}
	big := bytes.Repeat([]byte("x"), 70000)
	var stream bytes.Buffer
	stream.Write(wsFrame(true, 2, mask, chanMsg(chanStdin, "ls -l\n")))
	stream.Write(wsFrame(true, 9, mask, []byte("ping")))
	stream.Write(wsFrame(false, 2, mask, chanMsg(chanStdin, "ec")))
	stream.Write(wsFrame(true, 10, mask, nil)) // a pong between fragments
	stream.Write(wsFrame(true, 0, mask, []byte("ho hi\n")))
	stream.Write(wsFrame(false, 2, mask, chanMsg(chanResize, `{"Width":1`)))
	stream.Write(wsFrame(true, 0, mask, []byte(`20,"Height":40}`)))
	stream.Write(wsFrame(true, 2, mask, append([]byte{chanStdin}, big...)))
	stream.Write(wsFrame(true, 2, mask, []byte{chanClose, chanStdin}))
	stream.Write(wsFrame(true, 8, mask, []byte{3, 232}))
	wantStdin := "ls -l\necho hi\n" + string(big)

	var b64 bytes.Buffer
	b64.Write(wsFrame(true, 1, nil, []byte("1"+base64.StdEncoding.EncodeToString([]byte("hello\n")))))
	enc := base64.StdEncoding.EncodeToString([]byte("oops\n"))
	b64.Write(wsFrame(false, 1, nil, []byte("2"+enc[:3])))
	b64.Write(wsFrame(true, 0, nil, []byte(enc[3:])))
	b64.Write(wsFrame(true, 1, nil, []byte("3"+base64.StdEncoding.EncodeToString([]byte(`{"status":"Success"}`)))))

	for _, step := range []int{0, 1, 2, 3, 7, 100, 4096} {
		t.Run(fmt.Sprintf("binary/step%d", step), func(t *testing.T) {
			got, msgs, err := collect(&wsDemux{}, stream.Bytes(), step)
			if err != nil {
				t.Fatal(err)
			}
			if got[chanStdin] != wantStdin || got[chanResize] != `{"Width":120,"Height":40}` || got[chanClose] != string([]byte{chanStdin}) {
				t.Fatalf("got stdin %d bytes, resize %q, close %q", len(got[chanStdin]), got[chanResize], got[chanClose])
			}
			for _, m := range msgs {
				if m.ch == chanResize && m.data != `{"Width":120,"Height":40}` {
					t.Fatalf("resize emitted in pieces: %q", m.data)
				}
			}
		})
		t.Run(fmt.Sprintf("base64/step%d", step), func(t *testing.T) {
			got, _, err := collect(&wsDemux{base64: true}, b64.Bytes(), step)
			if err != nil {
				t.Fatal(err)
			}
			if got[chanStdout] != "hello\n" || got[chanStderr] != "oops\n" || got[chanError] != `{"status":"Success"}` {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestWSDemuxRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b64    bool
		stream []byte
	}{
		{"compressed", false, append([]byte{0xc2, 0x01}, 1)},
		{"continuation first", false, wsFrame(true, 0, nil, []byte("x"))},
		{"message inside message", false, append(wsFrame(false, 2, nil, []byte{1, 'a'}), wsFrame(true, 2, nil, []byte{1, 'b'})...)},
		{"fragmented control", false, wsFrame(false, 9, nil, nil)},
		{"long control", false, wsFrame(true, 9, nil, bytes.Repeat([]byte("p"), 126))},
		{"reserved opcode", false, wsFrame(true, 3, nil, []byte("x"))},
		{"huge length", false, []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}},
		{"bad base64 channel", true, wsFrame(true, 1, nil, []byte("xAAAA"))},
		{"bad base64", true, wsFrame(true, 1, nil, []byte("1!!!!"))},
		{"oversized buffered", false, append(wsFrame(false, 2, nil, []byte{chanResize}), wsFrame(true, 0, nil, make([]byte, maxBufferedMessage+1))...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := collect(&wsDemux{base64: tc.b64}, tc.stream, 0)
			if !errors.Is(err, ErrStreamFraming) {
				t.Fatalf("err %v, want ErrStreamFraming", err)
			}
		})
	}
}

// FuzzWSDemux feeds arbitrary bytes in two pieces: the demuxer must not
// panic, must not change its input, and must follow the same stream the
// same way however it is split.
func FuzzWSDemux(f *testing.F) {
	f.Add(wsFrame(true, 2, []byte{1, 2, 3, 4}, chanMsg(0, "ls\n")), uint16(3), false)
	f.Add(wsFrame(true, 1, nil, []byte("1aGk=")), uint16(1), true)
	f.Fuzz(func(t *testing.T, stream []byte, split uint16, b64 bool) {
		whole, _, err1 := collect(&wsDemux{base64: b64}, stream, 0)
		parts, _, err2 := collect(&wsDemux{base64: b64}, stream, int(split)%(len(stream)+1)+1)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("split changes the verdict: %v vs %v", err1, err2)
		}
		if err1 == nil && fmt.Sprint(whole) != fmt.Sprint(parts) {
			t.Fatalf("split changes the result: %q vs %q", whole, parts)
		}
	})
}
