//go:build !linux

package proxy

import "net"

// bytesWaiting reports whether bytes the peer sent wait unread in c's
// socket; only Linux is asked (pending_linux.go).
func bytesWaiting(net.Conn) bool { return false }
