package server

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pqedge/pqedge/pqtls/quichello"
)

// refusedAttempts remembers, per client address, the connection attempt
// whose first Initial the limits refused (quicConnContext), so that the
// attempt's later Initials are refused with it, neither asking the limits
// again nor counted again: the second Initial of an X25519MLKEM768
// ClientHello, and retransmissions, would otherwise each open a
// connection in quic-go (none exists for them) and count as another
// refusal, where a TCP client is refused once. What such an Initial would
// open is useless anyway: the part of the ClientHello before it was
// refused. A new attempt from the same socket asks the limits anew.
//
// Attempts are told apart by the tracker (quichello.Tracker.Attempt); an
// address the tracker does not follow is not remembered, and each of its
// Initials asks the limits. At most refusedMax addresses are remembered,
// each for refusedTTL.
type refusedAttempts struct {
	mu     sync.Mutex // guards byAddr
	byAddr map[netip.AddrPort]refusedAttempt
}

type refusedAttempt struct {
	attempt string // quichello.Tracker.Attempt
	err     error  // why it was refused
	at      time.Time
}

const (
	// refusedMax bounds the addresses remembered, as the tracker bounds
	// the attempts it follows.
	refusedMax = quichello.DefaultMaxAttempts
	// refusedTTL is how long a refusal is remembered: as long as the
	// tracker keeps an attempt, past which it names none.
	refusedTTL = quichello.DefaultTTL
)

// refused returns the error that refused the attempt addr's Initial
// belongs to, or nil.
func (r *refusedAttempts) refused(tr *quichello.Tracker, addr net.Addr) error {
	key, ok := refusalKey(addr)
	if !ok {
		return nil
	}
	attempt, ok := tr.Attempt(addr)
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ra, ok := r.byAddr[key]
	if !ok || ra.attempt != attempt || time.Since(ra.at) > refusedTTL {
		return nil
	}
	return ra.err
}

// note remembers that the attempt addr's Initial belongs to was refused
// with err.
func (r *refusedAttempts) note(tr *quichello.Tracker, addr net.Addr, err error) {
	key, ok := refusalKey(addr)
	if !ok {
		return
	}
	attempt, ok := tr.Attempt(addr)
	if !ok {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byAddr == nil {
		r.byAddr = map[netip.AddrPort]refusedAttempt{}
	}
	if _, ok := r.byAddr[key]; !ok && len(r.byAddr) >= refusedMax {
		for k, ra := range r.byAddr {
			if now.Sub(ra.at) > refusedTTL {
				delete(r.byAddr, k)
			}
		}
		if len(r.byAddr) >= refusedMax {
			return // its later Initials ask the limits again
		}
	}
	r.byAddr[key] = refusedAttempt{attempt: attempt, err: err, at: now}
}

// refusalKey is addr as the tracker keys it: IPv4-mapped addresses
// unmapped.
func refusalKey(addr net.Addr) (netip.AddrPort, bool) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}
