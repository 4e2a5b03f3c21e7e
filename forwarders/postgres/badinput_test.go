package postgres

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/testutil/pgtest"
)

func startupMsg() []byte {
	body := binary.BigEndian.AppendUint32(nil, proto30)
	body = append(body, "user\x00x\x00database\x00y\x00\x00"...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

func TestBadInput(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	p, _ := policy.Parse([]byte(testPolicy))
	f := New(Config{Policy: policy.Static(p), Audit: nopAudit{}, StartupTimeout: 500 * time.Millisecond, MaxMessageSize: 1 << 16})
	addr := serve(t, f, sessionFor("dba"), config.Target{Name: "orders-db", Kind: "postgres", Address: pg.Addr, Database: pgtest.Database, Credentials: config.Credentials{User: pgtest.TrustUser}, TLS: "disable"})
	loggedIn := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write(startupMsg())
		// Read until ReadyForQuery.
		r := newMsgReader(c, 1<<20)
		for {
			typ, _, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if typ == 'Z' {
				return c
			}
		}
	}
	expectErrorThenClose := func(t *testing.T, c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("connection not closed cleanly: %v", err)
		}
		if !bytes.Contains(b, []byte("jumpgate")) || b[0] != 'E' {
			t.Fatalf("no ErrorResponse before close: %q", b)
		}
	}
	t.Run("lying startup length", func(t *testing.T) {
		c, _ := net.Dial("tcp", addr)
		defer c.Close()
		c.Write([]byte{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0})
		expectErrorThenClose(t, c)
	})
	t.Run("slow startup times out", func(t *testing.T) {
		c, _ := net.Dial("tcp", addr)
		defer c.Close()
		c.Write([]byte{0, 0, 0})
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("not closed: %v", err)
		}
	})
	t.Run("oversized message", func(t *testing.T) {
		c := loggedIn(t)
		c.Write([]byte{'Q', 0, 0x10, 0, 0})
		expectErrorThenClose(t, c)
	})
	t.Run("negative length", func(t *testing.T) {
		c := loggedIn(t)
		c.Write([]byte{'Q', 0xff, 0xff, 0xff, 0xf0})
		expectErrorThenClose(t, c)
	})
	t.Run("unknown message type", func(t *testing.T) {
		c := loggedIn(t)
		c.Write([]byte{'!', 0, 0, 0, 4})
		expectErrorThenClose(t, c)
	})
	t.Run("truncated bind", func(t *testing.T) {
		c := loggedIn(t)
		c.Write([]byte{'B', 0, 0, 0, 8, 0, 0, 0, 9})
		expectErrorThenClose(t, c)
	})
	t.Run("upstream dies mid-result", func(t *testing.T) {
		c := loggedIn(t)
		q := "SELECT g, pg_terminate_backend(pg_backend_pid()) FROM generate_series(1, 3) g\x00"
		c.Write(append(binary.BigEndian.AppendUint32([]byte{'Q'}, uint32(len(q)+4)), q...))
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || !bytes.Contains(b, []byte("E")) {
			t.Fatalf("%v %q", err, b)
		}
	})
}

func FuzzMessages(f *testing.F) {
	f.Add(byte('B'), []byte("p\x00s\x00\x00\x01\x00\x01\x00\x01\x00\x00\x00\x01x\x00\x01\x00\x01"))
	f.Add(byte('T'), []byte("\x00\x01ssn\x00\x00\x00\x40\x00\x00\x03\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00"))
	f.Add(byte('D'), []byte("\x00\x02\x00\x00\x00\x0b123-45-6789\xff\xff\xff\xff"))
	f.Add(byte('d'), []byte("1\talice@example.com\t4242424242424242\n"))
	f.Add(byte('P'), []byte("s1\x00DELETE FROM t\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		_, _ = decodeBind(body)
		_, _ = decodeParse(body)
		fs, _ := decodeRowDesc(body)
		_, _ = errorMessage(body)
		plan := &rowPlan{det: newDetectors([]string{"credit_card", "email", "us_ssn", "iban", "phone", "re:se+cret"})}
		for _, fd := range fs {
			plan.cols = append(plan.cols, colMask{whole: fd.attnum%2 == 0, patterns: true, typ: fd.typeOID, format: fd.format & 1})
		}
		if out, err := plan.rewriteRow(nil, body); err == nil {
			// A rewritten row must itself be a well-formed DataRow.
			if _, err := (&rowPlan{}).rewriteRow(nil, out); err != nil {
				t.Fatalf("rewritten row malformed: %v", err)
			}
		}
		cp := &copyPlan{whole: []bool{true, false}, det: plan.det, delim: '\t', csv: typ%2 == 0}
		_ = cp.rewriteCopy(body)
		r := newMsgReader(bytes.NewReader(append([]byte{typ}, body...)), 1<<16)
		_, _, _ = r.next()
		if q, err := Classify(string(body), nil); err == nil && len(q) == 0 {
			t.Fatal("parsed query without statements")
		}
	})
}
