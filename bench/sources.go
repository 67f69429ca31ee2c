package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// MaxSources bounds SpreadDial's source addresses: 127.1.0.0/16 holds
// them.
const MaxSources = 1 << 16

// ConnDialer opens a TCP connection to addr, giving up after timeout.
// Failures are *leanclient.Error (KindDial or KindTimeout).
type ConnDialer func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error)

// SpreadDial returns an Options.Dial that makes each connection from the
// next of n loopback source addresses 127.1.x.y in turn, so that a flood
// against a loopback target looks like n clients, as a distributed one
// would: a server's per-client-address cap (pqedge's
// limits.connections_per_client) then does not stop it, and what is
// measured is how the server copes with the handshakes themselves. Linux
// accepts any 127.0.0.0/8 source on the loopback interface.
func SpreadDial(n int) (func(ctx context.Context, addr string, cfg *leanclient.Config) (*leanclient.Result, error), error) {
	dial, err := SpreadConnDial(n)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, addr string, cfg *leanclient.Config) (*leanclient.Result, error) {
		conn, err := dial(ctx, addr, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return leanclient.Handshake(ctx, conn, cfg)
	}, nil
}

// SpreadConnDial is SpreadDial's connection alone, for the replay flood
// (Options.Replay), which sends no handshake of its own.
func SpreadConnDial(n int) (ConnDialer, error) {
	if n < 1 || n > MaxSources {
		return nil, fmt.Errorf("%d source addresses: want 1 to %d", n, MaxSources)
	}
	var next atomic.Uint32
	return func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
		i := next.Add(1) % uint32(n)
		src := netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})
		return dialFrom(ctx, addr, timeout, net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	}, nil
}

// plainConnDial is the ConnDialer without -sources: the system picks the
// source address.
func plainConnDial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	return dialFrom(ctx, addr, timeout, nil)
}

// dialFrom connects from src (nil: the system's choice). The timeout
// protects against a host that drops SYNs.
func dialFrom(ctx context.Context, addr string, timeout time.Duration, src *net.TCPAddr) (net.Conn, error) {
	// No keep-alive probes: these connections live for one handshake,
	// and turning them on is three more system calls per connection.
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	op := "dial " + addr
	if src != nil {
		d.LocalAddr = src
		op += " from " + src.IP.String()
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		kind := leanclient.KindDial
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			kind = leanclient.KindTimeout
		}
		return nil, &leanclient.Error{Kind: kind, Op: op, Err: err}
	}
	return conn, nil
}
