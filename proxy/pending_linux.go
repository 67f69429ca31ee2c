package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// bytesWaiting reports whether bytes the peer sent wait unread in c's
// socket (peeked, MSG_PEEK, without blocking), looking under TLS through
// NetConn; false when it cannot tell. The upstream's answer to a request
// it refused early is such bytes when the write of the rest of the body
// fails on the reset that followed it: the transport then closes the
// connection before its read loop reads them.
func bytesWaiting(c net.Conn) bool {
	for range 4 {
		if sc, ok := c.(syscall.Conn); ok {
			rc, err := sc.SyscallConn()
			if err != nil {
				return false
			}
			waiting := false
			rc.Control(func(fd uintptr) {
				var one [1]byte
				n, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				waiting = err == nil && n > 0
			})
			return waiting
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = nc.NetConn()
	}
	return false
}
