package server

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The TCP keep-alive of client connections is set once, on the listening
// socket, and Linux copies it to every connection accepted from it (the
// accepted socket is a clone of the listener's, keep-alive timer started,
// net/ipv4/tcp_minisocks.c tcp_create_openreq_child). Go would otherwise
// set it on each accepted connection with four setsockopt calls, before
// pqedge has looked at the connection: under a handshake flood, where
// most connections are refused at once, those calls were 13% of the
// front's CPU (perf, docs/BENCHMARKS.md "Overload").
const (
	// acceptKeepAlive is net.ListenConfig.KeepAlive: negative, Go sets
	// nothing on accepted connections; they inherit the listener's.
	acceptKeepAlive = -1
	// The listener's keep-alive is Go's default for accepted connections
	// (net/dial.go): a peer silent for 15 s is probed every 15 s, and
	// given up after 9 unanswered probes.
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// keepAliveOnListener is a net.ListenConfig Control function that turns
// TCP keep-alive on, with keepAliveIdle, keepAliveInterval and
// keepAliveCount, on a listening TCP socket, for the connections it
// accepts to inherit; other sockets are left alone.
func keepAliveOnListener(network, address string, c syscall.RawConn) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil
	}
	opts := []struct {
		level, opt, value int
		name              string
	}{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle / time.Second), "TCP_KEEPIDLE"},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second), "TCP_KEEPINTVL"},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount, "TCP_KEEPCNT"},
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		for _, o := range opts {
			if err := unix.SetsockoptInt(int(fd), o.level, o.opt, o.value); err != nil {
				serr = fmt.Errorf("failed to set %s on %s %s: %w", o.name, network, address, err)
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("failed to reach the socket for %s: %w", address, err)
	}
	return serr
}
