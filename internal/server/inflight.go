package server

import (
	"net"
	"net/netip"
	"sync"

	"github.com/pqedge/pqedge/internal/connlimit"
)

// inflight counts the requests each client address has in flight, over
// HTTP/1.1, HTTP/2 and HTTP/3 together, for limits.requests_per_client.
// Each such request may hold an upstream connection, the proxy's copy
// buffer and its stream's buffers (~85 KiB in all) for as long as its
// client keeps the response waiting, up to timeouts.response_write a
// write: an HTTP/2 connection carries 250 streams, so without this one
// address's limits.connections_per_client connections could pin 250
// times as many upstream connections as over HTTP/1.1 (100 connections
// of 100 streams at a zero flow-control window held 9,350 upstream
// connections and 830 MiB). It lives on the Server, across config
// generations: a request counted under one is released under the next.
// Safe for concurrent use.
type inflight struct {
	mu sync.Mutex         // guards n
	n  map[netip.Addr]int // requests in flight by client key; absent: none
}

// acquire counts a request of key in flight unless key has max already
// (max 0: no cap); it reports whether it did.
func (f *inflight) acquire(key netip.Addr, max int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if max > 0 && f.n[key] >= max {
		return false
	}
	if f.n == nil {
		f.n = map[netip.Addr]int{}
	}
	f.n[key]++
	return true
}

// release ends a request acquire counted.
func (f *inflight) release(key netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[key] <= 1 {
		delete(f.n, key) // the map holds only addresses with requests in flight
		return
	}
	f.n[key]--
}

// requestClientKey is the key a request from remote counts under: an IPv4
// address, or an IPv6 address's /64 (one host's addresses), as
// limits.connections_per_client counts. ok is false for an address that
// is not IP (a Unix socket), which no cap applies to.
func requestClientKey(remote net.Addr) (key netip.Addr, ok bool) {
	ip, ok := connlimit.AddrIP(remote)
	if !ok {
		return netip.Addr{}, false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}
