package bastion

import (
	"net"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// chanConn presents an SSH channel as a net.Conn so an inner SSH session can
// run over it. Deadlines are not supported by channels; the bastion bounds
// the inner handshake with a timer instead.
type chanConn struct {
	gossh.Channel
	local, remote net.Addr
}

func (c *chanConn) LocalAddr() net.Addr              { return c.local }
func (c *chanConn) RemoteAddr() net.Addr             { return c.remote }
func (c *chanConn) SetDeadline(time.Time) error      { return nil }
func (c *chanConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chanConn) SetWriteDeadline(time.Time) error { return nil }

type nameAddr string

func (a nameAddr) Network() string { return "jumpgate" }
func (a nameAddr) String() string  { return string(a) }
