package server

import (
	"syscall"
	"time"
	"unsafe"

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
// silent, so that it is never evicted for it (connlimit.Watcher); so does
// a kernel whose tcp_info ends before tcpi_bytes_received (Go supports
// Linux 3.2 and later): unix.GetsockoptTCPInfo hides the length the kernel
// wrote and leaves the field zero there, which would make every connection
// look silent and evict clients whose ClientHello waits in the queue.
//
// unread says that pqedge has read nothing from the socket yet (a queued
// handshake's): then partialFor is how long ago the client's last byte
// arrived (tcpi_last_data_recv) when the bytes waiting in the socket are
// the start of a TLS record that has not arrived whole (its 5-byte header
// peeked, MSG_PEEK), and 0 otherwise: a whole ClientHello record waiting
// unread, anything that is not a handshake record, or a socket it cannot
// ask is never partial.
func clientSilent(rc syscall.RawConn, unread bool) (silent bool, partialFor time.Duration) {
	rc.Control(func(fd uintptr) {
		var info unix.TCPInfo
		n := uint32(unix.SizeofTCPInfo)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
		if errno != 0 || uintptr(n) < bytesReceivedEnd {
			return
		}
		silent = info.Bytes_received == 0
		if silent || !unread {
			return
		}
		var hdr [5]byte
		m, _, err := unix.Recvfrom(int(fd), hdr[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err != nil || m < 1 || hdr[0] != recordTypeHandshake {
			return
		}
		if m == len(hdr) && info.Bytes_received >= uint64(len(hdr))+(uint64(hdr[3])<<8|uint64(hdr[4])) {
			return // a whole record waits unread
		}
		partialFor = time.Duration(info.Last_data_recv) * time.Millisecond
	})
	return silent, partialFor
}

// bytesReceivedEnd is how long a tcp_info must be to hold
// tcpi_bytes_received.
const bytesReceivedEnd = unsafe.Offsetof(unix.TCPInfo{}.Bytes_received) + unsafe.Sizeof(unix.TCPInfo{}.Bytes_received)

// TCP states of include/net/tcp_states.h, as TCPInfo.State gives them.
const (
	tcpClose     = 7 // TCP_CLOSE: reset (or never connected)
	tcpCloseWait = 8 // TCP_CLOSE_WAIT: the peer's FIN arrived
)
