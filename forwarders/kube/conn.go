package kube

import (
	"context"
	"io"
	"net"
	"sync"

	"github.com/jumpgate/jumpgate/forwarders"
)

// oneConnListener hands out one connection, then blocks until that
// connection or the listener is closed.
type oneConnListener struct {
	mu    sync.Mutex
	conn  net.Conn
	done  chan struct{}
	close sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{done: make(chan struct{})}
	l.conn = &notifyConn{Conn: c, l: l}
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) signal() { l.close.Do(func() { close(l.done) }) }

func (l *oneConnListener) Close() error {
	l.signal()
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return pipeAddr{} }

// notifyConn tells its listener when the server closes it.
type notifyConn struct {
	net.Conn
	l *oneConnListener
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.l.signal()
	return err
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "ssh-channel" }
func (pipeAddr) String() string  { return "ssh-channel" }

// asNetConn returns conn as a net.Conn. A stream that is not one (an SSH
// channel) is bridged through net.Pipe so the HTTP server gets deadlines
// for slow clients; join waits for the bridge's copiers, which end when
// either side closes.
func asNetConn(ctx context.Context, conn forwarders.Stream) (nc net.Conn, join func()) {
	if c, ok := conn.(net.Conn); ok {
		return c, func() {}
	}
	a, b := net.Pipe()
	var wg sync.WaitGroup
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = b.Close()
			_ = conn.Close()
		})
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer stop()
		_, _ = io.Copy(b, conn)
	}()
	go func() {
		defer wg.Done()
		defer stop()
		_, _ = io.Copy(conn, b)
	}()
	unwatch := context.AfterFunc(ctx, stop)
	return a, func() {
		_ = a.Close()
		stop()
		unwatch()
		wg.Wait()
	}
}
