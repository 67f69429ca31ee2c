package anycast

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// FreeBind is a net.ListenConfig (or net.Dialer) Control function that lets
// a socket bind an IP address the host does not have yet: IP_FREEBIND for
// IPv4 sockets, IPV6_FREEBIND (Linux 4.15) for IPv6 ones, see ip(7) and
// ipv6(7). pqedge's listeners bind the anycast service address with it, so
// they can start, and pqedge become ready, before the address is on lo.
// Packets reach such a listener once the address is local.
//
//	lc := net.ListenConfig{Control: anycast.FreeBind}
//	ln, err := lc.Listen(ctx, "tcp", "192.0.2.53:853")
//
// Other networks (unix sockets) are left alone.
func FreeBind(network, address string, c syscall.RawConn) error {
	var level, opt int
	switch network {
	case "tcp4", "udp4":
		level, opt = unix.SOL_IP, unix.IP_FREEBIND
	case "tcp6", "udp6":
		level, opt = unix.SOL_IPV6, unix.IPV6_FREEBIND
	default:
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
		return fmt.Errorf("failed to reach the socket for %s: %w", address, err)
	}
	if serr != nil {
		return fmt.Errorf("failed to set free bind on %s %s: %w", network, address, serr)
	}
	return nil
}
