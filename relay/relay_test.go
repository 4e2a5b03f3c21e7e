package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
)

// TestHalfCloseKeepsReplies is the case gliderlabs' stock forwarder gets
// wrong: the client sends a request and half-closes; the server answers
// after reading EOF; the whole answer must arrive.
func TestHalfCloseKeepsReplies(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		in, _ := io.ReadAll(c) // until the client's half-close
		c.Write(in)
		c.Write(payload)
	}()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	proxied := make(chan Counts, 1)
	go func() {
		c, err := front.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", backend.Addr().String())
		if err != nil {
			return
		}
		n, _ := Pipe(context.Background(), c.(*net.TCPConn), up.(*net.TCPConn))
		proxied <- n
	}()
	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("hello"), payload...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	n := <-proxied
	if n.AtoB != 5 || n.BtoA != int64(len(want)) {
		t.Fatalf("counts %+v", n)
	}
	<-done
}

func TestCancelUnblocks(t *testing.T) {
	a1, a2 := net.Pipe()
	b1, b2 := net.Pipe()
	defer a2.Close()
	defer b2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { _, err := Pipe(ctx, a1, b1); res <- err }()
	cancel()
	if err := <-res; err == nil {
		t.Fatal("Pipe returned no error after cancel")
	}
}
