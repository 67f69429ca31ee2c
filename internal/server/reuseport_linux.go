package server

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort is a net.ListenConfig Control function that sets SO_REUSEPORT
// (socket(7), Linux 3.9) before bind, so that every process of the same
// user that sets it too may bind the same address and port: listener
// reuse_port. The kernel then spreads new connections over the sockets by a
// hash of the connection's addresses and ports, as ECMP routers spread an
// anycast address over nodes; a connection stays with the socket that took
// it. Only TCP and UDP sockets are touched.
func reusePort(network, address string, c syscall.RawConn) error {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
		return fmt.Errorf("failed to reach the socket for %s: %w", address, err)
	}
	if serr != nil {
		return fmt.Errorf("failed to set SO_REUSEPORT on %s %s: %w", network, address, serr)
	}
	return nil
}
