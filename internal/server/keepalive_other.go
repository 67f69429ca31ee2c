//go:build !linux

package server

import "syscall"

// acceptKeepAlive is net.ListenConfig.KeepAlive: zero, Go's default, which
// sets keep-alive on each accepted connection; whether accepted sockets
// inherit the listener's is not something every system promises.
const acceptKeepAlive = 0

// keepAliveOnListener leaves the socket alone: Go sets keep-alive per
// connection here.
func keepAliveOnListener(network, address string, c syscall.RawConn) error { return nil }
