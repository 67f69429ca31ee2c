//go:build !linux

package server

import (
	"errors"
	"syscall"
)

// reusePort refuses: only Linux spreads connections over the sockets that
// share a port (elsewhere SO_REUSEPORT hands them all to one socket, or
// does not exist).
func reusePort(network, address string, c syscall.RawConn) error {
	return errors.New("listener reuse_port needs Linux")
}
