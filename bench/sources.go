package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// MaxSources bounds SpreadDial's source addresses: 127.1.0.0/16 holds
// them.
const MaxSources = 1 << 16

// SpreadDial returns an Options.Dial that makes each connection from the
// next of n loopback source addresses 127.1.x.y in turn, so that a flood
// against a loopback target looks like n clients, as a distributed one
// would: a server's per-client-address cap (pqedge's
// limits.connections_per_client) then does not stop it, and what is
// measured is how the server copes with the handshakes themselves. Linux
// accepts any 127.0.0.0/8 source on the loopback interface.
func SpreadDial(n int) (func(ctx context.Context, addr string, cfg *leanclient.Config) (*leanclient.Result, error), error) {
	if n < 1 || n > MaxSources {
		return nil, fmt.Errorf("%d source addresses: want 1 to %d", n, MaxSources)
	}
	var next atomic.Uint32
	return func(ctx context.Context, addr string, cfg *leanclient.Config) (*leanclient.Result, error) {
		i := next.Add(1) % uint32(n)
		src := netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})
		d := net.Dialer{Timeout: cfg.Timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			kind := leanclient.KindDial
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				kind = leanclient.KindTimeout
			}
			return nil, &leanclient.Error{Kind: kind, Op: "dial " + addr + " from " + src.String(), Err: err}
		}
		defer conn.Close()
		return leanclient.Handshake(ctx, conn, cfg)
	}, nil
}
