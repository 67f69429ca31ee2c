//go:build !linux

package proxy

import (
	"net"
	"testing"
)

// deadAddr returns a loopback address nothing listens on: a port freed
// by closing a listener (see deadaddr_linux_test.go for why Linux
// reserves it instead).
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
