//go:build !linux

package server

import (
	"errors"
	"net"
)

// setBacklog cannot change a listening socket's backlog here: an accept
// loop that waits for handshake room leaves the kernel's backlog as it is.
func setBacklog(net.Listener, int) error {
	return errors.New("the listen backlog is only changed on Linux")
}

func listenBacklog() int { return 0 }
