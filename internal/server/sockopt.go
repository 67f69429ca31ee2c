package server

import (
	"syscall"

	"github.com/pqedge/pqedge/internal/anycast"
	"github.com/pqedge/pqedge/internal/plan"
)

// control is the net.ListenConfig Control function a wanted socket is
// opened with: its socket options, each set before bind, in order.
func (w socketWant) control() func(network, address string, c syscall.RawConn) error {
	// Keep-alive for the connections a TCP socket accepts (UDP sockets
	// are left alone), with acceptKeepAlive in the ListenConfig.
	fns := []func(network, address string, c syscall.RawConn) error{keepAliveOnListener}
	if w.freeBind {
		fns = append(fns, anycast.FreeBind)
	}
	if w.reusePort {
		fns = append(fns, reusePort)
	}
	return chainControl(fns...)
}

// chainControl runs Control functions in order; the first error stops
// the bind. No function gives nil, so net.ListenConfig sets nothing.
func chainControl(fns ...func(network, address string, c syscall.RawConn) error) func(network, address string, c syscall.RawConn) error {
	switch len(fns) {
	case 0:
		return nil
	case 1:
		return fns[0]
	}
	return func(network, address string, c syscall.RawConn) error {
		for _, fn := range fns {
			if err := fn(network, address, c); err != nil {
				return err
			}
		}
		return nil
	}
}

// warnKeptReusePort logs a listener whose reuse_port a reload changed on
// a socket that stays open (its address stays, or it is adopted): a
// socket's options are set when it is opened, and a reload never closes a
// socket whose address stays (no connection may be refused), so the change
// waits for a restart.
func (ss *socketSet) warnKeptReusePort(w socketWant, sk *socket) {
	if sk.reusePort != w.reusePort {
		ss.srv.log.Warn("reuse_port changed on an address that stays open; it applies when pqedge restarts",
			"socket", w.what, "address", plan.BindAddress(w.key), "reuse_port", w.reusePort)
	}
}
