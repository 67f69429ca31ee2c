package server

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peerGone reports whether the client of a TCP connection has reset it or
// sent its FIN, from the socket's state (TCP_INFO, tcp(7)): a reset
// leaves it CLOSE, a FIN CLOSE_WAIT; while a handshake runs it is
// ESTABLISHED. It costs one getsockopt and reads nothing, so the
// ClientHello stays where crypto/tls will read it. A socket it cannot ask
// counts as not gone.
func peerGone(rc syscall.RawConn) bool {
	var state uint8
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		if info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); serr == nil {
			state = info.State
		}
	}); err != nil || serr != nil {
		return false
	}
	return state == tcpClose || state == tcpCloseWait
}

// clientSilent reports whether the client of a TCP connection has sent
// nothing at all: no byte received by the kernel (tcpi_bytes_received,
// Linux 4.1), read by pqedge or not. A socket it cannot ask counts as not
// silent, so that it is never evicted for it (connlimit.Watcher).
func clientSilent(rc syscall.RawConn) bool {
	silent := false
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			silent = info.Bytes_received == 0
		}
	})
	return silent
}

// TCP states of include/net/tcp_states.h, as TCPInfo.State gives them.
const (
	tcpClose     = 7 // TCP_CLOSE: reset (or never connected)
	tcpCloseWait = 8 // TCP_CLOSE_WAIT: the peer's FIN arrived
)
