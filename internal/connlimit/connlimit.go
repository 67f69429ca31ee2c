// Package connlimit bounds what new connections can take from a server
// before any cryptography is done: connections in total, connections per
// client address, and TLS handshakes in progress or queued, in total and
// per client address. A connection over a cap is closed at once, costing
// the server an accept and a close; a handshake over its cap waits in a
// bounded queue for a slot or is refused; and while handshakes wait, a
// connection whose client keeps its handshake waiting (silent or stalled
// for IdleGrace) is closed to make room (evict.go).
//
// Files: connlimit.go holds the connection caps, the options and the
// counters; handshake.go the handshake slots, their queue and the accept
// loops' pause; evict.go the eviction of idle handshakes; crypto.go and
// relay.go the crypto gate.
//
// It is the accept path's first step (issue 12, kind 10): a flood of new
// handshakes must not starve connections that are already established, and
// one address must not hold every socket. It knows nothing of TLS or HTTP:
// the server's accept loop calls Accept and ReserveHandshake for each
// accepted connection, and WaitForRoom instead of accepting while every
// handshake slot is taken and the queue is full; the connection's
// goroutine waits on its HandshakeTicket before the handshake (QUIC
// reserves at a connection's first Initial and waits at its ClientHello,
// WaitContext) and takes AcquireCrypto/ReleaseCrypto around each
// burst of its CPU (CryptoGate, which paces handshakes through the network
// poller while they queue); Stats feeds the metrics.
//
// A client address is an IPv4 address, or an IPv6 /64: one host commonly
// holds a whole /64, so counting single IPv6 addresses would let it open
// as many connections as it has addresses. Clients behind one NAT share an
// address; ConnsPerClient must leave room for them.
package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied to zero fields of Options.
const (
	// DefaultMaxConns bounds open client connections: at ~45 KiB of RSS
	// per idle TLS connection (docs/BENCHMARKS.md, "What an idle
	// connection holds"), 16384 hold about 720 MiB.
	DefaultMaxConns = 16384
	// DefaultMaxConnsPerClient leaves room for a large office behind one
	// NAT address while keeping one host from holding every socket.
	DefaultMaxConnsPerClient = 1024
	// DefaultMaxHandshakes bounds TLS handshakes in progress, each holding
	// a goroutine, a ClientHello and, once it arrives, a key exchange.
	DefaultMaxHandshakes = 256
	// DefaultHandshakeQueue is how many connections may wait for a
	// handshake slot; they wait at most as long as the caller's context
	// allows (the handshake timeout). Behind the 256 slots, whose
	// handshakes wait for the crypto gate under a flood, 256 more are
	// ~0.2 s of one core's handshakes (~2,500 a second): a queue longer
	// than its clients' patience holds connections that are closed unused
	// when their turn comes, an accept, a check and a close each on the
	// established connections' core. With 1,024, a flood whose clients
	// gave up after 250 ms left ~50,000 such connections per 10 s, against
	// ~20,000 with 256, whose clients got twice the handshakes
	// (docs/BENCHMARKS.md, "Overload", set Q). Beyond the queue the
	// kernel drops SYNs, which clients retry.
	DefaultHandshakeQueue = 256
	// DefaultMaxHandshakesPerClient bounds the handshake slots and queue
	// places one client address holds at once: a quarter of the slots,
	// so that one address that sends ClientHellos and then nothing (or
	// nothing at all) cannot hold every slot and the queue for the
	// handshake timeout, which would pause every accept loop; room for
	// an office behind one NAT address opening pages at once.
	DefaultMaxHandshakesPerClient = 64
)

// Errors of Accept and BeginHandshake.
var (
	ErrTooManyConns      = errors.New("too many connections")
	ErrTooManyFromClient = errors.New("too many connections from this client address")
	ErrHandshakeQueue    = errors.New("too many handshakes waiting")
	// ErrTooManyHandshakesFromClient: the client address holds
	// MaxHandshakesPerClient handshake slots and queue places already.
	ErrTooManyHandshakesFromClient = errors.New("too many handshakes from this client address")
)

// Options configure a Limiter. A zero field takes its default; a negative
// one turns that cap off.
type Options struct {
	MaxConns          int // open client connections
	MaxConnsPerClient int // open connections per client address
	MaxHandshakes     int // TLS handshakes in progress
	// HandshakeQueue is how many connections may wait for a handshake
	// slot once MaxHandshakes are in progress; the rest are refused.
	// Negative: none wait.
	HandshakeQueue int
	// MaxHandshakesPerClient caps the handshake slots and queue places
	// one client address holds at once; the rest of its connections are
	// refused (ReserveHandshake).
	MaxHandshakesPerClient int
	// CPUShare is the share of the CPUs Go runs on (GOMAXPROCS) that the
	// work the crypto gate paces may take while handshakes queue (a
	// flood): its handshakes' cryptography, its queued connections' turns,
	// its failed handshakes' cleanup and the accept loops' yields all wait
	// while the process, measured by its CPU time, used more
	// (CryptoGate.SetCPUShare). Zero means DefaultCPUShare; 1 or more,
	// negative or NaN, no budget; one below MinCPUShare is MinCPUShare.
	// Why: a front whose CPU a flood keeps busy has
	// no idle time in which to absorb what else takes it (the collector's
	// mark phases, other processes' and the hypervisor's time slices),
	// and each such stretch then lands on the established connections'
	// requests (docs/BENCHMARKS.md, "Overload", sets M-Q). The cost is the
	// flood's share: handshakes completed under overload fall to about
	// CPUShare of the capacity; outside a flood (nothing queues) nothing
	// waits.
	CPUShare float64
	// MaxCrypto caps handshakes doing their cryptography at once
	// (AcquireCrypto, CryptoGate); zero means GOMAXPROCS, negative no cap.
	MaxCrypto int
	// IdleGrace is how long a watched handshake's client may keep it
	// waiting (silent since the accept, or stalled mid-ClientHello)
	// before the connection is evicted while other handshakes wait
	// (evict.go); zero means DefaultIdleGrace, negative no eviction.
	IdleGrace time.Duration
}

func (o *Options) setDefaults() {
	for _, f := range []struct {
		p   *int
		def int
	}{
		{&o.MaxConns, DefaultMaxConns}, {&o.MaxConnsPerClient, DefaultMaxConnsPerClient},
		{&o.MaxHandshakes, DefaultMaxHandshakes}, {&o.HandshakeQueue, DefaultHandshakeQueue},
		{&o.MaxHandshakesPerClient, DefaultMaxHandshakesPerClient},
	} {
		if *f.p == 0 {
			*f.p = f.def
		}
	}
	if o.IdleGrace == 0 {
		o.IdleGrace = DefaultIdleGrace
	}
	if o.CPUShare == 0 {
		o.CPUShare = DefaultCPUShare
	}
}

// Stats are the Limiter's counters, for metrics. The gauges are a snapshot;
// the counters only grow.
type Stats struct {
	Conns             int // open connections (gauge)
	Handshakes        int // handshakes in progress (gauge)
	WaitingHandshakes int // connections waiting for a handshake slot (gauge)

	Admitted          uint64 // connections Accept let through
	RefusedTotal      uint64 // refused: MaxConns reached
	RefusedPerClient  uint64 // refused: MaxConnsPerClient reached
	HandshakesQueued  uint64 // handshakes that had to wait for a slot
	HandshakesRefused uint64 // refused: the queue was full
	// HandshakesRefusedPerClient: refused, the client address held
	// MaxHandshakesPerClient slots and queue places.
	HandshakesRefusedPerClient uint64
	HandshakesExpired          uint64 // gave up waiting (the caller's context ended)
	// HandshakesSilent and HandshakesStalled: connections closed to
	// make room while handshakes waited, their client having sent
	// nothing since the accept, or nothing more while its handshake read
	// (evict.go), for IdleGrace.
	HandshakesSilent, HandshakesStalled uint64
	AcceptPauses                        uint64 // accept loops that waited for room (WaitForRoom)
	// AcceptPaused is the time accept loops spent waiting for room, summed
	// over the loops, pauses still going on included.
	AcceptPaused time.Duration

	Crypto CryptoStats // the crypto gate (AcquireCrypto)
}

// Limiter enforces Options. It is safe for concurrent use.
type Limiter struct {
	opts   Options
	crypto *CryptoGate

	mu        sync.Mutex // guards the fields below
	conns     int
	perClient map[netip.Addr]int
	running   int      // handshakes holding a slot
	waiters   []waiter // FIFO of handshakes waiting for a slot
	// oldest and newest end the list of watched places (evict.go), in
	// the order of their next check.
	oldest, newest *place
	// evictTimer runs an eviction pass at the oldest watched place's
	// next check while handshakes wait (evict.go); evictArmed says it is
	// pending, for evictAt. Made at the first wait.
	evictTimer *time.Timer
	evictArmed bool
	evictAt    time.Time
	// pending counts the slots and queue places each client address
	// holds (MaxHandshakesPerClient); it holds only addresses with some.
	pending map[netip.Addr]int
	// room is closed, and replaced by nil, when a handshake could start
	// or queue again after every slot was taken and the queue was full
	// (WaitForRoom).
	room chan struct{}
	// pausing WaitForRoom callers wait now, since pauseStarts in sum
	// (offsets from epoch): Stats counts their time so far, so that
	// AcceptPaused grows during a long pause, not only when it ends.
	pausing     int
	pauseStarts time.Duration
	epoch       time.Time

	admitted, refusedTotal, refusedClient atomic.Uint64
	queued, hsRefused, hsExpired          atomic.Uint64
	hsSilent, hsStalled                   atomic.Uint64
	hsRefusedClient                       atomic.Uint64
	pauses, pausedNanos                   atomic.Uint64
}

// New returns a Limiter for opts.
func New(opts Options) *Limiter {
	opts.setDefaults()
	l := &Limiter{opts: opts, perClient: map[netip.Addr]int{}, pending: map[netip.Addr]int{}, crypto: NewCryptoGate(opts.MaxCrypto), epoch: time.Now()}
	l.crypto.SetCPUShare(opts.CPUShare)
	return l
}

// AcquireCrypto takes a slot of the crypto gate (CryptoGate.Acquire),
// waiting until deadline at most: call it when a burst of a handshake's
// CPU begins, and ReleaseCrypto when it ends.
func (l *Limiter) AcquireCrypto(deadline time.Time) error { return l.crypto.Acquire(deadline) }

// ReleaseCrypto frees a slot taken by AcquireCrypto.
func (l *Limiter) ReleaseCrypto() { l.crypto.Release() }

// YieldToPoller waits for Go's network poller to run once while the
// crypto gate paces, a flood's sign (CryptoGate.YieldToPoller).
func (l *Limiter) YieldToPoller() { l.crypto.YieldToPoller() }

// AddrIP is a's IP address, IPv4-mapped addresses unmapped and the zone
// dropped; ok is false for an address that is not an IP one (a unix
// socket's). TCP and UDP addresses are read as they are (this runs for
// each accepted connection); others are parsed from their string. The
// server matches trusted load balancers' networks with it too, so that
// both agree on who a peer is.
func AddrIP(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return netip.Addr{}, false
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	ip := ap.Addr().Unmap().WithZone("")
	return ip, ip.IsValid()
}

// clientKey is the address connections are counted by: IPv4 as is, IPv6
// by /64 (AddrIP). ok is false for a non-IP address, which only the total
// cap applies to.
func clientKey(a net.Addr) (netip.Addr, bool) {
	ip, ok := AddrIP(a)
	if !ok {
		return netip.Addr{}, false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr(), true
	}
	return ip, true
}

// Accept counts a newly accepted connection against the caps. On success
// it returns c wrapped so that closing it frees its slot; otherwise it
// closes c at once (nothing has been read from it) and returns
// ErrTooManyConns or ErrTooManyFromClient.
func (l *Limiter) Accept(c net.Conn) (net.Conn, error) {
	key, keyed, err := l.admit(c.RemoteAddr())
	if err != nil {
		c.Close()
		return nil, err
	}
	return &Conn{Conn: c, l: l, key: key, keyed: keyed}, nil
}

// Admit counts a new connection from addr against the caps, as Accept
// does, for a transport that has no net.Conn to wrap: a QUIC connection,
// which quic-go owns (the caps count connections whatever carries them).
// A nil addr counts in MaxConns only, for a connection whose address is
// not proven yet (Admission.SetClient counts it later). On success the
// caller must call Release once the connection is gone. Otherwise it
// returns ErrTooManyConns or ErrTooManyFromClient.
func (l *Limiter) Admit(addr net.Addr) (*Admission, error) {
	key, keyed, err := l.admit(addr)
	if err != nil {
		return nil, err
	}
	return &Admission{l: l, key: key, keyed: keyed}, nil
}

// Admission is a connection counted by Admit.
type Admission struct {
	l *Limiter
	// Guarded by l.mu: the client the connection counts against, when
	// keyed, and whether Release ran.
	key      netip.Addr
	keyed    bool
	released bool
}

// Release frees the connection's place; calls after the first do nothing.
func (a *Admission) Release() {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	if a.released {
		return
	}
	a.released = true
	a.l.releaseLocked(a.key, a.keyed)
}

// SetClient counts a connection admitted without an address (Admit(nil))
// against addr's client from now on, once the address is proven: a QUIC
// client's source address is proven by its handshake (RFC 9000 section
// 8.1), while its first Initial's can be forged, and counting forged
// Initials against an address would let anyone use up that address's
// MaxConnsPerClient, over TCP too. It fails with ErrTooManyFromClient
// (counted) when that client has MaxConnsPerClient connections already;
// the connection then still holds its place in MaxConns until Release. An
// admission that has a client, or was released, or a non-IP addr, is left
// as it is.
func (a *Admission) SetClient(addr net.Addr) error {
	l := a.l
	return l.setClient(addr, clientCount{l.perClient, l.opts.MaxConnsPerClient, &l.refusedClient, ErrTooManyFromClient},
		func() (bool, error) { return a.keyed || a.released, nil },
		func(key netip.Addr) { a.key, a.keyed = key, true })
}

// clientCount is one of the per-client counts (perClient, pending): the
// map, its cap (none when not positive), the refusals' counter and error.
type clientCount struct {
	counts  map[netip.Addr]int
	max     int
	refused *atomic.Uint64
	err     error
}

// setClient counts a place taken without a client address against
// addr's client from now on (Admission.SetClient,
// HandshakeTicket.SetClient), in c unless that client holds c.max places
// already: c.err then, counted. Under l.mu, check runs first: a skip
// leaves the place as it is, an error is returned as is; set then records
// the client on the place. A non-IP addr is left as it is.
func (l *Limiter) setClient(addr net.Addr, c clientCount, check func() (skip bool, err error), set func(netip.Addr)) error {
	key, keyed := clientKey(addr)
	if !keyed {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if skip, err := check(); skip || err != nil {
		return err
	}
	if c.max > 0 && c.counts[key] >= c.max {
		c.refused.Add(1)
		return c.err
	}
	c.counts[key]++
	set(key)
	return nil
}

func (l *Limiter) admit(addr net.Addr) (netip.Addr, bool, error) {
	key, keyed := clientKey(addr)
	l.mu.Lock()
	switch {
	case l.opts.MaxConns > 0 && l.conns >= l.opts.MaxConns:
		l.mu.Unlock()
		l.refusedTotal.Add(1)
		return key, keyed, ErrTooManyConns
	case keyed && l.opts.MaxConnsPerClient > 0 && l.perClient[key] >= l.opts.MaxConnsPerClient:
		l.mu.Unlock()
		l.refusedClient.Add(1)
		return key, keyed, ErrTooManyFromClient
	}
	l.conns++
	if keyed {
		l.perClient[key]++
	}
	l.mu.Unlock()
	l.admitted.Add(1)
	return key, keyed, nil
}

func (l *Limiter) release(key netip.Addr, keyed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releaseLocked(key, keyed)
}

// releaseLocked frees a connection's place; l.mu is held.
func (l *Limiter) releaseLocked(key netip.Addr, keyed bool) {
	l.conns--
	if !keyed {
		return
	}
	if n := l.perClient[key] - 1; n > 0 {
		l.perClient[key] = n
	} else {
		delete(l.perClient, key) // the map holds only clients with connections
	}
}

// Conn is a connection admitted by Accept. Closing it frees its slot, once.
type Conn struct {
	net.Conn
	l     *Limiter
	key   netip.Addr
	keyed bool
	once  sync.Once
}

// Close closes the connection and frees its slot.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key, c.keyed) })
	return err
}

// NetConn returns the wrapped connection, as tls.Conn.NetConn does.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Stats returns the current counters.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	s := Stats{Conns: l.conns, Handshakes: l.running, WaitingHandshakes: len(l.waiters)}
	s.AcceptPaused = time.Duration(l.pausing)*time.Since(l.epoch) - l.pauseStarts
	s.AcceptPaused += time.Duration(l.pausedNanos.Load())
	l.mu.Unlock()
	s.Admitted = l.admitted.Load()
	s.RefusedTotal = l.refusedTotal.Load()
	s.RefusedPerClient = l.refusedClient.Load()
	s.HandshakesQueued = l.queued.Load()
	s.HandshakesRefused = l.hsRefused.Load()
	s.HandshakesRefusedPerClient = l.hsRefusedClient.Load()
	s.HandshakesExpired = l.hsExpired.Load()
	s.HandshakesSilent = l.hsSilent.Load()
	s.HandshakesStalled = l.hsStalled.Load()
	s.AcceptPauses = l.pauses.Load()
	s.Crypto = l.crypto.Stats()
	return s
}

// Listener wraps ln so that Accept returns only connections the Limiter
// admits; the others are closed and counted without being returned.
func (l *Limiter) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, l: l} }

type listener struct {
	net.Listener
	l *Limiter
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c, err := ln.l.Accept(c); err == nil {
			return c, nil
		}
	}
}

// SetOptions changes the caps and the idle grace of a Limiter in use (a
// config reload).
// Connections already admitted keep their slots even when a cap drops
// below their number; new ones are judged by the new caps. Raising
// MaxHandshakes hands the new slots to waiting handshakes at once.
func (l *Limiter) SetOptions(opts Options) {
	opts.setDefaults()
	l.crypto.setLimit(opts.MaxCrypto)
	l.crypto.SetCPUShare(opts.CPUShare)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opts = opts
	for len(l.waiters) > 0 && (opts.MaxHandshakes <= 0 || l.running < opts.MaxHandshakes) {
		l.running++
		close(l.popWaiter())
	}
	l.signalRoom()
	// A new IdleGrace moves the next check (evict.go).
	l.armEvict()
}
