package proxy

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// deadAddr returns a loopback address nothing listens on, and nothing
// can while the test runs: a TCP socket bound to it and never listening,
// so that a connection to it is refused. A port freed by closing a
// listener was not reserved: the proxy's own listener, opened next, once
// got it (a clean-clone CI run), and the proxy, dialling itself, sent
// the request round in a loop until the client's timeout.
func deadAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
