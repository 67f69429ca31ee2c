//go:build !linux

package anycast

import "syscall"

// FreeBind does nothing outside Linux, where IP_FREEBIND does not exist: a
// listener must then bind an address the host already has.
func FreeBind(network, address string, c syscall.RawConn) error { return nil }
