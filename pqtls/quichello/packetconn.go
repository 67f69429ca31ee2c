package quichello

import (
	"net"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// PacketConn is the server's UDP socket as handed to quic.Transport, with
// every datagram it reads also shown to a Tracker.
//
// quic-go uses a socket that implements OOBCapablePacketConn and
// ReadBatch as it would the *net.UDPConn itself: batched reads
// (recvmmsg), GSO and ECN stay on. ReadBatch, ReadMsgUDP and ReadFrom pass
// each datagram to Tracker.Observe, which returns after a test of its
// first five bytes for anything but a client Initial: all traffic after
// the handshake uses short headers and costs one branch per packet.
//
//	udp, _ := net.ListenUDP("udp", addr)
//	tracker := &quichello.Tracker{}
//	tr := &quic.Transport{Conn: quichello.NewPacketConn(udp, tracker)}
//	// in tls.Config.GetConfigForClient:
//	ch, err := tracker.ClientHello(hello.Conn.RemoteAddr())
type PacketConn struct {
	*net.UDPConn
	tracker *Tracker
	batch   *ipv4.PacketConn

	batches atomic.Int64 // ReadBatch calls, for tests
}

// NewPacketConn wraps c; every datagram read from it is shown to t.
func NewPacketConn(c *net.UDPConn, t *Tracker) *PacketConn {
	// ipv4.PacketConn's ReadBatch is recvmmsg on the socket whatever its
	// address family, as quic-go itself uses it.
	return &PacketConn{UDPConn: c, tracker: t, batch: ipv4.NewPacketConn(c)}
}

// ReadBatch reads several datagrams at once, as quic-go does on Linux.
func (c *PacketConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	c.batches.Add(1)
	n, err := c.batch.ReadBatch(ms, flags)
	for i := range n {
		m := &ms[i]
		if len(m.Buffers) == 0 {
			continue
		}
		b := m.Buffers[0]
		c.tracker.Observe(b[:min(m.N, len(b))], m.Addr)
	}
	return n, err
}

// ReadMsgUDP reads one datagram with its control messages.
func (c *PacketConn) ReadMsgUDP(b, oob []byte) (int, int, int, *net.UDPAddr, error) {
	n, oobn, flags, addr, err := c.UDPConn.ReadMsgUDP(b, oob)
	if n > 0 && addr != nil {
		c.tracker.Observe(b[:n], addr)
	}
	return n, oobn, flags, addr, err
}

// ReadFrom reads one datagram.
func (c *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.UDPConn.ReadFrom(b)
	if n > 0 && addr != nil {
		c.tracker.Observe(b[:n], addr)
	}
	return n, addr, err
}
