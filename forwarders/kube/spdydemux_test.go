package kube

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/recorder"
)

// spdyFrames writes frames with spdystream's framer (one framer per
// direction, so header compression carries over as on a connection).
type spdyFrames struct {
	buf bytes.Buffer
	f   *spdy.Framer
}

func newSPDYFrames(t testing.TB) *spdyFrames {
	s := &spdyFrames{}
	f, err := spdy.NewFramer(&s.buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.f = f
	return s
}

func (s *spdyFrames) syn(t testing.TB, id spdy.StreamId, typ string) *spdyFrames {
	if err := s.f.WriteFrame(&spdy.SynStreamFrame{StreamId: id, Headers: http.Header{"streamtype": {typ}}}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *spdyFrames) reply(t testing.TB, id spdy.StreamId) *spdyFrames {
	if err := s.f.WriteFrame(&spdy.SynReplyFrame{StreamId: id, Headers: http.Header{}}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *spdyFrames) data(t testing.TB, id spdy.StreamId, fin bool, d string) *spdyFrames {
	var fl spdy.DataFlags
	if fin {
		fl = spdy.DataFlagFin
	}
	if err := s.f.WriteFrame(&spdy.DataFrame{StreamId: id, Flags: fl, Data: []byte(d)}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *spdyFrames) ping(t testing.TB, id uint32) *spdyFrames {
	if err := s.f.WriteFrame(&spdy.PingFrame{Id: id}); err != nil {
		t.Fatal(err)
	}
	return s
}

// execStreams is the client side of a kubectl SPDY exec with a TTY.
func execStreams(t testing.TB) *spdyFrames {
	return newSPDYFrames(t).syn(t, 1, "error").syn(t, 3, "stdin").syn(t, 5, "stdout").syn(t, 7, "resize").
		data(t, 7, false, `{"Width":100,"Height":30}`+"\n").ping(t, 1).
		data(t, 3, false, "echo hi\n").data(t, 3, true, "")
}

func execReplies(t testing.TB) *spdyFrames {
	return newSPDYFrames(t).reply(t, 1).reply(t, 3).reply(t, 5).reply(t, 7).ping(t, 1).
		data(t, 5, false, "hi\n").data(t, 5, true, "").
		data(t, 1, true, `{"metadata":{},"status":"Success"}`)
}

// synRaw is a SYN_STREAM for stream 1 whose header block, compressed as
// SPDY compresses it, is block.
func synRaw(t testing.TB, block []byte) []byte {
	var z bytes.Buffer
	w, err := zlib.NewWriterLevelDict(&z, zlib.BestCompression, spdyHeaderDictionary)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(block)
	w.Flush()
	n := 10 + z.Len()
	out := []byte{0x80, 3, 0, 1, 0, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	return append(out, z.Bytes()...)
}

type spdyEmitted struct{ typ, data string }

// feedSPDY runs a demuxer over b in pieces of size step and returns what
// it emitted, what it let through and its error.
func feedSPDY(b []byte, step int) (got []spdyEmitted, passed []byte, err error) {
	d := newSPDYDemux(newSPDYStreams(), func(typ string, data []byte) {
		if n := len(got); n > 0 && got[n-1].typ == typ {
			got[n-1].data += string(data)
			return
		}
		got = append(got, spdyEmitted{typ, string(data)})
	})
	if step <= 0 {
		step = len(b) + 1
	}
	for len(b) > 0 && err == nil {
		n := min(step, len(b))
		var out []byte
		out, err = d.Feed(b[:n])
		passed = append(passed, out...)
		b = b[n:]
	}
	if err == nil && d.Buffered() > 0 {
		err = d.fail("truncated")
	}
	return got, passed, err
}

func TestSPDYDemux(t *testing.T) {
	stream := execStreams(t).buf.Bytes()
	want := []spdyEmitted{{"resize", `{"Width":100,"Height":30}` + "\n"}, {"stdin", "echo hi\n"}}
	for _, step := range []int{0, 1, 3, 7, 64} {
		got, passed, err := feedSPDY(stream, step)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if !bytes.Equal(passed, stream) {
			t.Fatalf("step %d: passed %d of %d bytes", step, len(passed), len(stream))
		}
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("step %d: emitted %q", step, got)
		}
	}

	bad := []struct {
		name   string
		stream []byte
	}{
		{"data on an unopened stream", newSPDYFrames(t).syn(t, 1, "error").data(t, 3, false, "rm -rf /").buf.Bytes()},
		{"stream opened twice", newSPDYFrames(t).syn(t, 1, "stdin").syn(t, 1, "stdout").buf.Bytes()},
		{"truncated", stream[:len(stream)-3]},
		// A PING whose length says 8: the framer reads 4, the peer would
		// see the other 4 as the start of another frame.
		{"length disagrees with framer", append(newSPDYFrames(t).syn(t, 1, "stdin").buf.Bytes(),
			0x80, 3, 0, 6, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1)},
		{"headers not zlib", append(newSPDYFrames(t).buf.Bytes(), 0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 'x', 'y')},
		{"zero stream id", []byte{0, 0, 0, 0, 0, 0, 0, 1, 'x'}},
		// The framer would allocate what these claim: 48 GiB of
		// settings, a 4 GiB header name, 4 billion headers.
		{"frame too large", []byte{0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 'x'}},
		{"SETTINGS count", []byte{0x80, 3, 0, 4, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff}},
		{"huge header name", synRaw(t, []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 'a'})},
		{"huge header count", synRaw(t, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 'a'})},
		{"upper-case header", synRaw(t, []byte{0, 0, 0, 1, 0, 0, 0, 1, 'A', 0, 0, 0, 1, 'b'})},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, passed, err := feedSPDY(tc.stream, 1)
			if !errors.Is(err, ErrSPDYFraming) {
				t.Fatalf("err %v", err)
			}
			for _, g := range got {
				if strings.Contains(g.data, "rm -rf") {
					t.Fatalf("emitted %q", got)
				}
			}
			if bytes.Contains(passed, []byte("rm -rf")) || !bytes.HasPrefix(tc.stream, passed) || len(passed) == len(tc.stream) {
				t.Fatalf("passed %q, emitted %q", passed, got)
			}
		})
	}
}

// spdyUpstream is a fake API server that switches to SPDY/3.1, hands
// the test everything the client sent (until the client's stdin ends or
// the connection closes) and answers with reply.
func spdyUpstream(t *testing.T, reply []byte) (addr string, ca []byte, got <-chan []byte) {
	ch := make(chan []byte, 1)
	up, upCA := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n")
		var all bytes.Buffer
		f, _ := spdy.NewFramer(io.Discard, io.TeeReader(brw, &all))
		for {
			fr, err := f.ReadFrame()
			if err != nil {
				break
			}
			if d, ok := fr.(*spdy.DataFrame); ok && d.StreamId == 3 && d.Flags&spdy.DataFlagFin != 0 {
				break
			}
		}
		ch <- all.Bytes()
		conn.Write(reply)
	})
	return up.Listener.Addr().String(), upCA, ch
}

// TestSPDYExecRecorded: a SPDY/3.1 exec is relayed byte for byte both
// ways, and stdin, stdout and the resize are in the signed recording.
func TestSPDYExecRecorded(t *testing.T) {
	fromClient, fromServer := execStreams(t).buf.Bytes(), execReplies(t).buf.Bytes()
	addr, ca, upGot := spdyUpstream(t, fromServer)
	dir := t.TempDir()
	e := startForwarderCfg(t, addr, ca, "upstream-token", testPolicy, alice, func(c *Config) {
		c.RecordingsDir, c.FailClosed = dir, true
		c.Clock = func() time.Time { return execDay }
		c.NewID = func() string { return "k-spdy1" }
	})
	c, br, resp := upgradeRequest(t, e, "/api/v1/namespaces/default/pods/web/exec?command=sh&container=app&stdin=true&stdout=true&tty=true",
		"SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n")
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Stream-Protocol-Version") != "v4.channel.k8s.io" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	c.Write(fromClient)
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !bytes.Equal(got, fromServer) {
		t.Fatalf("client got %q", got)
	}
	if g := <-upGot; !bytes.Equal(g, fromClient) {
		t.Fatalf("API server got %q", g)
	}
	waitFor(t, "session.end", func() bool { return len(e.audit.ofType(audit.SessionEnd)) == 1 })
	if s := e.audit.ofType(audit.SessionStart)[0].Details; s["protocol"] != "v4.channel.k8s.io" {
		t.Fatalf("session.start %v", s)
	}
	d := e.audit.ofType(audit.SessionEnd)[0].Details
	if d["recording_error"] != nil || d["sha256"] == nil {
		t.Fatalf("session.end %v", d)
	}
	in, out, resized := readCast(t, filepath.Join(dir, "2026-03-04", "k-spdy1.cast"))
	if in != "echo hi\n" || out != "hi\n" || resized != "100x30" {
		t.Fatalf("recording: input %q, output %q, resize %q", in, out, resized)
	}
}

// TestSPDYExecFailClosed: a frame the forwarder cannot follow is not
// passed on; the client is told on its error stream and the exec ends,
// with the reason in session.end.
func TestSPDYExecFailClosed(t *testing.T) {
	fromClient := newSPDYFrames(t).syn(t, 1, "error").syn(t, 3, "stdin").data(t, 3, false, "ls\n").
		data(t, 9, false, "rm -rf /\n").buf.Bytes()
	addr, ca, upGot := spdyUpstream(t, nil)
	dir := t.TempDir()
	e := startForwarderCfg(t, addr, ca, "upstream-token", testPolicy, alice, func(c *Config) {
		c.RecordingsDir, c.FailClosed = dir, true
		c.Clock = func() time.Time { return execDay }
		c.NewID = func() string { return "k-spdy2" }
	})
	c, br, resp := upgradeRequest(t, e, "/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true&stdout=true",
		"SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.Write(fromClient)
	got, _ := io.ReadAll(br)
	c.Close()
	if g := <-upGot; bytes.Contains(g, []byte("rm -rf")) || !bytes.Contains(g, []byte("ls\n")) {
		t.Fatalf("API server got %q", g)
	}
	f, _ := spdy.NewFramer(io.Discard, bufio.NewReader(bytes.NewReader(got)))
	fr, err := f.ReadFrame()
	df, ok := fr.(*spdy.DataFrame)
	if err != nil || !ok || df.StreamId != 1 {
		t.Fatalf("client got %q (%v)", got, err)
	}
	var st status
	if err := json.Unmarshal(df.Data, &st); err != nil || st.Status != "Failure" || !strings.Contains(st.Message, "could not be recorded") {
		t.Fatalf("error stream %q", df.Data)
	}
	waitFor(t, "session.end", func() bool { return len(e.audit.ofType(audit.SessionEnd)) == 1 })
	d := e.audit.ofType(audit.SessionEnd)[0].Details
	if re, _ := d["recording_error"].(string); !strings.Contains(re, "never opened") {
		t.Fatalf("session.end %v", d)
	}
	if in, _, _ := readCast(t, filepath.Join(dir, "2026-03-04", "k-spdy2.cast")); in != "ls\n" {
		t.Fatalf("recorded input %q", in)
	}
}

// readCast returns a recording's input, output and last resize (WxH).
func readCast(t *testing.T, path string) (in, out, resize string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	var i, o strings.Builder
	for {
		ev, err := rec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case recorder.EventInput:
			i.WriteString(ev.Data)
		case recorder.EventOutput:
			o.WriteString(ev.Data)
		case recorder.EventResize:
			if c, r, ok := ev.Size(); ok {
				resize = strconv.Itoa(c) + "x" + strconv.Itoa(r)
			}
		}
	}
	return i.String(), o.String(), resize
}

// FuzzSPDYDemux: whatever the bytes, the demuxer does not panic, passes on
// only a prefix of its input made of the frames it parsed, fails with
// ErrSPDYFraming, and sees the same frames however the input is split.
// Seeds: testdata/fuzz/FuzzSPDYDemux (kubectl-shaped exec streams, both
// directions, and broken frames).
func FuzzSPDYDemux(f *testing.F) {
	f.Add(execStreams(f).buf.Bytes(), uint8(5))
	f.Add(execReplies(f).buf.Bytes(), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		got1, passed1, err1 := feedSPDY(stream, 0)
		got2, passed2, err2 := feedSPDY(stream, int(step))
		for _, err := range []error{err1, err2} {
			if err != nil && !errors.Is(err, ErrSPDYFraming) {
				t.Fatalf("error does not wrap ErrSPDYFraming: %v", err)
			}
		}
		if !bytes.HasPrefix(stream, passed1) || !bytes.HasPrefix(stream, passed2) {
			t.Fatal("passed bytes that are not a prefix of the input")
		}
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(passed1, passed2) || len(got1) != len(got2) {
			t.Fatalf("whole: %v %d bytes %q; in pieces of %d: %v %d bytes %q", err1, len(passed1), got1, step, err2, len(passed2), got2)
		}
		for i := range got1 {
			if got1[i] != got2[i] {
				t.Fatalf("emitted %q vs %q", got1, got2)
			}
		}
		if err1 == nil && !bytes.Equal(passed1, stream) {
			t.Fatal("no error, but not everything passed")
		}
	})
}

// TestSPDYHeaderDictionary: the demuxer's copy of the SPDY/3 dictionary
// decompresses header blocks spdystream's framer compressed.
func TestSPDYHeaderDictionary(t *testing.T) {
	b := newSPDYFrames(t).syn(t, 1, "stdin").syn(t, 3, "stdout").buf.Bytes()
	d := newSPDYDemux(newSPDYStreams(), func(string, []byte) {})
	first := spdyFrameHeader + int(b[7])
	if err := d.checkHeaderBlock(b[spdyFrameHeader+10 : first]); err != nil {
		t.Fatal(err)
	}
	if err := d.checkHeaderBlock(b[first+spdyFrameHeader+10:]); err != nil {
		t.Fatal(err)
	}
}
