// Package freeport hands out loopback ports for servers that must be told
// their port before they bind it: a pqedge config written for a test, an
// ACME CA that must know the validation port, a bench front started as a
// separate process.
//
// A port comes from the kernel (bind to port 0) and is released again, so
// another process may take it before the server binds it; that fails with a
// bind error rather than passing wrongly. What this package rules out is the
// collision within one process: the kernel may return a port it returned a
// moment ago once that listener is closed, and two ports asked for one
// config (a listener and its admin.listen, say) must differ. Every port is
// therefore handed out at most once per process, and only if both TCP and
// UDP are free on it, since a pqedge listener with HTTP/3 binds both.
package freeport

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// attempts bounds the search: the kernel picks ports at random from a range
// of ~28,000, so a repeat or a port busy for UDP is rare and a few tries
// suffice; the bound keeps a host out of ports from failing fast.
const attempts = 64

// pool hands out the ports its probe finds, each at most once.
type pool struct {
	probe func() (int, error) // a free port, or why there is none

	mu    sync.Mutex
	given map[int]bool // guarded by mu: every port take returned
}

// process is the pool behind Port: one per process, since the point is that
// no two callers in the process get the same port.
var process = &pool{probe: probe, given: map[int]bool{}}

// take returns the first port the probe finds that was not returned before.
func (p *pool) take() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last error
	for range attempts {
		port, err := p.probe()
		if err != nil {
			last = err
			continue
		}
		if p.given[port] {
			last = fmt.Errorf("port %d was handed out before", port)
			continue
		}
		p.given[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("failed to find a free loopback port in %d tries: %w", attempts, last)
}

// Port returns a loopback (127.0.0.1) port on which both TCP and UDP were
// free a moment ago and that Port has not returned before in this process.
// The error says why none was found (no loopback, or ports exhausted).
func Port() (int, error) { return process.take() }

// Addr returns "127.0.0.1:PORT" for a port from Port.
func Addr() (string, error) {
	port, err := Port()
	if err != nil {
		return "", err
	}
	return loopback(port), nil
}

// loopback is the IPv4 loopback address with port.
func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// TB is the part of testing.TB that Must uses; the package does not import
// testing, so that bench, which is not a test, can use Port and Addr.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// Must returns a port from Port and ends the test if there is none.
func Must(t TB) int {
	t.Helper()
	port, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// MustAddr returns "127.0.0.1:PORT" for a port from Must.
func MustAddr(t TB) string {
	t.Helper()
	return loopback(Must(t))
}

// probe asks the kernel for a free TCP port and checks UDP on it too.
func probe() (int, error) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("failed to bind a loopback TCP port: %w", err)
	}
	defer tcp.Close()
	port := tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenPacket("udp", loopback(port))
	if err != nil {
		return 0, errors.Join(fmt.Errorf("port %d is free for TCP but not for UDP", port), err)
	}
	udp.Close()
	return port, nil
}
