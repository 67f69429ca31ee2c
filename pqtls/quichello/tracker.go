package quichello

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// Defaults of a Tracker.
const (
	// DefaultMaxAttempts bounds the connection attempts a Tracker follows
	// at once: with DefaultLimit that is at most 16 MiB of CRYPTO buffers
	// in the worst case, 2–3 MiB with real 2 KB ClientHellos.
	DefaultMaxAttempts = 1024
	// DefaultTTL is how long an attempt is kept, complete or not: the
	// handshake timeout's order of magnitude. A ClientHello nobody asked
	// for by then will not be asked for.
	DefaultTTL = 10 * time.Second
)

// ErrNotRecorded is returned by Tracker.ClientHello for an address with no
// attempt: none was seen, it expired, or the Tracker was full (Dropped
// counts those).
var ErrNotRecorded = errors.New("no QUIC ClientHello recorded for this client address")

// Tracker follows the connection attempts of a QUIC server's clients, one
// Recorder per client address, so that the TLS configuration callbacks
// can ask for the ClientHello of the connection they serve.
//
// Observe is called with every datagram the server receives (PacketConn
// does it); ClientHello is called from GetConfigForClient or
// GetCertificate with hello.Conn.RemoteAddr(), where quic-go puts the
// client's UDP address. quic-go reads datagrams before it hands the
// ClientHello to crypto/tls, so by then the Tracker has seen every
// datagram that carried it.
//
// One address holds one attempt at a time: a new Initial from the same
// address that is sealed with keys of its own Destination Connection ID
// (a new connection from a reused socket) replaces the previous attempt.
// Attempts expire after TTL; at most MaxAttempts are followed, and a
// Tracker that is full ignores new addresses (counted by Dropped) rather
// than slow the server.
//
// The zero Tracker uses the defaults. Safe for concurrent use: Observe
// does its work under one mutex, which quic-go calls from its single read
// loop per socket.
type Tracker struct {
	Limit       int              // CRYPTO bytes per attempt (0: DefaultLimit)
	MaxAttempts int              // attempts followed at once (0: DefaultMaxAttempts)
	TTL         time.Duration    // lifetime of an attempt (0: DefaultTTL)
	Now         func() time.Time // the clock (nil: time.Now)

	mu        sync.Mutex // guards the fields below
	attempts  map[netip.AddrPort]*attempt
	lastSweep time.Time
	dropped   int
	// unreadable holds the addresses with no attempt whose latest Initial
	// could not be opened, and when; at most MaxAttempts of them.
	unreadable  map[netip.AddrPort]time.Time
	nUnreadable int
}

type attempt struct {
	rec     *Recorder
	started time.Time
}

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Tracker) ttl() time.Duration {
	if t.TTL > 0 {
		return t.TTL
	}
	return DefaultTTL
}

func (t *Tracker) maxAttempts() int {
	if t.MaxAttempts > 0 {
		return t.MaxAttempts
	}
	return DefaultMaxAttempts
}

// addrKey is the map key of a client address; IPv4-mapped IPv6 addresses
// are unmapped, so a dual-stack socket and quic-go agree.
func addrKey(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		if a == nil {
			return ap, false
		}
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return ap, false
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}

// Observe shows the tracker one datagram received from addr. Anything but
// a long-header Initial returns after a 5-byte test; d is neither
// modified nor kept.
func (t *Tracker) Observe(d []byte, from net.Addr) {
	if !IsInitial(d) {
		return
	}
	key, ok := addrKey(from)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.sweep(now)
	a := t.attempts[key]
	if a != nil && now.Sub(a.started) > t.ttl() {
		delete(t.attempts, key)
		a = nil
	}
	if a != nil {
		err := a.rec.Datagram(d)
		if (a.rec.Done() || errors.Is(err, ErrSkipped)) && t.isNewAttempt(a, d) {
			t.start(key, d, now)
		}
		return
	}
	if len(t.attempts) >= t.maxAttempts() {
		t.dropped++
		return
	}
	if !t.start(key, d, now) {
		t.noteUnreadable(key, now)
	}
}

// noteUnreadable remembers that the latest Initial from key, which has no
// attempt, could not be opened. Called with mu held.
func (t *Tracker) noteUnreadable(key netip.AddrPort, now time.Time) {
	t.nUnreadable++
	if t.unreadable == nil {
		t.unreadable = map[netip.AddrPort]time.Time{}
	}
	if _, ok := t.unreadable[key]; ok || len(t.unreadable) < t.maxAttempts() {
		t.unreadable[key] = now
	}
}

// isNewAttempt reports whether d, which a's recorder did not use, opens a
// new connection from the same address: its DCID is not the one a's keys
// come from. Whether it really is one is up to start, which keeps it only
// if it authenticates with keys of its own DCID.
func (t *Tracker) isNewAttempt(a *attempt, d []byte) bool {
	h, err := ParseHeader(d)
	return err == nil && h.Initial && string(h.DCID) != string(a.rec.odcid)
}

// start begins an attempt with d if d is an authentic Initial of a
// connection of its own, and reports whether it did. Called with mu held.
func (t *Tracker) start(key netip.AddrPort, d []byte, now time.Time) bool {
	rec := NewRecorder(t.Limit)
	if err := rec.Datagram(d); errors.Is(err, ErrSkipped) {
		return false // not authentic: do not let noise take a slot
	}
	if t.attempts == nil {
		t.attempts = map[netip.AddrPort]*attempt{}
	}
	t.attempts[key] = &attempt{rec: rec, started: now}
	delete(t.unreadable, key)
	return true
}

// sweep drops expired attempts, at most every quarter TTL so that its
// cost stays amortized. Called with mu held.
func (t *Tracker) sweep(now time.Time) {
	if now.Sub(t.lastSweep) < t.ttl()/4 {
		return
	}
	t.lastSweep = now
	for k, a := range t.attempts {
		if now.Sub(a.started) > t.ttl() {
			delete(t.attempts, k)
		}
	}
	for k, at := range t.unreadable {
		if now.Sub(at) > t.ttl() {
			delete(t.unreadable, k)
		}
	}
}

// ClientHello returns the ClientHello of the latest attempt from addr,
// with Wire filled in, ErrIncomplete while it is still arriving, the
// error that ended the attempt, or ErrNotRecorded. The result is shared:
// callers must not modify it.
func (t *Tracker) ClientHello(addr net.Addr) (*pqtls.ClientHello, error) {
	key, ok := addrKey(addr)
	if !ok {
		return nil, ErrNotRecorded
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.attempts[key]
	if a == nil || t.now().Sub(a.started) > t.ttl() {
		return nil, ErrNotRecorded
	}
	return a.rec.ClientHello()
}

// Attempt names the latest connection attempt from addr: the Destination
// Connection ID its first Initial was sent to, from which its Initial
// keys come (RFC 9001 Section 5.2). Every Initial of that attempt,
// retransmissions included, is of the same attempt; a new connection from
// the same socket is another (see Tracker). False when the Tracker follows
// no attempt from addr (none seen, expired, forgotten, or the Tracker was
// full).
func (t *Tracker) Attempt(addr net.Addr) (string, bool) {
	key, ok := addrKey(addr)
	if !ok {
		return "", false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.attempts[key]
	if a == nil || t.now().Sub(a.started) > t.ttl() || a.rec.odcid == nil {
		return "", false
	}
	return string(a.rec.odcid), true
}

// Unreadable reports whether the latest Initial from addr could not be
// opened (not QUIC, a datagram too small to carry an Initial, a payload
// that fails authentication, RFC 9001 Section 5) while addr had no attempt
// in progress. A server asks it when a new connection from addr begins:
// quic-go creates a connection for any Initial whose header parses, and
// one whose first packet nothing can open is noise, or an attack, to
// refuse at once instead of keeping it until the handshake times out.
//
// It is false when the Tracker could not tell (it was full, or the verdict
// expired): the caller then serves as usual.
func (t *Tracker) Unreadable(addr net.Addr) bool {
	key, ok := addrKey(addr)
	if !ok {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.unreadable[key]
	return ok && t.attempts[key] == nil && t.now().Sub(at) <= t.ttl()
}

// UnreadableInitials counts the Initials from addresses without an
// attempt that could not be opened.
func (t *Tracker) UnreadableInitials() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nUnreadable
}

// Forget drops the attempt of addr, when the server has what it needs
// (the handshake event is recorded) or the connection ended: its slot is
// free at once instead of after TTL.
func (t *Tracker) Forget(addr net.Addr) {
	key, ok := addrKey(addr)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.attempts, key)
	delete(t.unreadable, key)
}

// Len is the number of attempts followed now; Dropped how many attempts
// were not followed because MaxAttempts were.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.attempts)
}

// Dropped counts the attempts not followed because the Tracker was full.
func (t *Tracker) Dropped() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}
