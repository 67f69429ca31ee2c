package connlimit

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrCryptoWait is BeginCrypto's error when the deadline passed before a
// crypto slot was free.
var ErrCryptoWait = errors.New("handshake deadline passed waiting for a crypto slot")

// CryptoGate bounds the handshakes doing their cryptography at once (key
// exchange and signature: ~0.15 ms with ECDSA, up to ~0.7 ms with ML-DSA,
// docs/BENCHMARKS.md "The primitives alone") to the number of CPUs Go runs
// on, GOMAXPROCS, read at each BeginCrypto since the runtime updates it
// when the CPU affinity or the cgroup quota changes.
//
// Why not only MaxHandshakes: a handshake slot is held from before the
// ClientHello to the client's Finished, mostly waiting on the network, so
// MaxHandshakes must be in the hundreds for clients across the world. But
// Go's scheduler runs ready goroutines first come, first served: with
// hundreds of handshakes ready to compute, a request on an established
// connection waits behind all of them (measured: 256 handshakes in
// progress put 60-140 ms on a keep-alive request's p50 on one core,
// docs/BENCHMARKS.md "Overload"). Handshakes that wait here are parked,
// not ready, so an established connection waits behind at most
// GOMAXPROCS handshakes' cryptography.
//
// The gate is taken once the ClientHello has been read (a client that
// sends nothing holds no crypto slot) and released when the server reads
// the client's second flight. It is safe for concurrent use; the zero
// value is not usable: use NewCryptoGate.
type CryptoGate struct {
	mu      sync.Mutex // guards the fields below
	fixed   int        // > 0: the cap; 0: GOMAXPROCS; < 0: no cap
	running int
	waiters []*cryptoWaiter // FIFO

	queued, expired atomic.Uint64
}

// cryptoWaiter is a handshake waiting for a crypto slot; its channel is
// closed when a slot is handed over.
type cryptoWaiter struct{ ch chan struct{} }

// NewCryptoGate returns a gate of GOMAXPROCS slots; n > 0 fixes the cap
// at n instead, n < 0 turns the gate off.
func NewCryptoGate(n int) *CryptoGate { return &CryptoGate{fixed: n} }

// limit is the current cap, 0 for none; g.mu is held.
func (g *CryptoGate) limit() int {
	switch {
	case g.fixed > 0:
		return g.fixed
	case g.fixed < 0:
		return 0
	}
	return runtime.GOMAXPROCS(0)
}

// setLimit changes the cap as NewCryptoGate's n; waiters get the new
// slots at once.
func (g *CryptoGate) setLimit(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fixed = n
	for len(g.waiters) > 0 && (g.limit() == 0 || g.running < g.limit()) {
		w := g.waiters[0]
		g.waiters[0] = nil
		g.waiters = g.waiters[1:]
		g.running++
		close(w.ch)
	}
}

// BeginCrypto takes a crypto slot, waiting for one in FIFO order until
// deadline. On success the caller must call done exactly once when its
// cryptography is over (extra calls do nothing); otherwise it returns
// ErrCryptoWait.
func (g *CryptoGate) BeginCrypto(deadline time.Time) (done func(), err error) {
	g.mu.Lock()
	if n := g.limit(); n == 0 || g.running < n {
		g.running++
		g.mu.Unlock()
		return g.slot(), nil
	}
	w := &cryptoWaiter{ch: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	g.mu.Unlock()
	g.queued.Add(1)

	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.ch:
		// The slot was handed over. Closing w.ch put this goroutine in
		// its P's runnext, where it inherits the time slice of the
		// handshake that freed the slot: under a flood that chain would
		// go on from handshake to handshake, and Go's scheduler, which
		// looks at its global queue (where the network poller puts the
		// goroutines of established connections) only once its own is
		// empty or a slice has passed, left requests waiting for
		// seconds (docs/BENCHMARKS.md, "Overload"). Yielding puts this
		// handshake at the back of the global queue, behind them.
		runtime.Gosched()
		return g.slot(), nil
	case <-t.C:
	}
	g.mu.Lock()
	for i, x := range g.waiters {
		if x == w {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			g.mu.Unlock()
			g.expired.Add(1)
			return nil, ErrCryptoWait
		}
	}
	g.mu.Unlock()
	// A slot was handed over as the deadline passed: pass it on.
	g.release()
	g.expired.Add(1)
	return nil, ErrCryptoWait
}

// slot returns the done function of a slot: it frees the slot once.
func (g *CryptoGate) slot() func() {
	var once sync.Once
	return func() { once.Do(g.release) }
}

// release frees a slot, handing it to the longest waiter
// while the cap allows (it may have dropped since the slot was taken).
func (g *CryptoGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.limit(); len(g.waiters) > 0 && (n == 0 || g.running <= n) {
		w := g.waiters[0]
		g.waiters[0] = nil
		g.waiters = g.waiters[1:]
		close(w.ch)
		return
	}
	g.running--
}

// CryptoStats are the gate's counters, for metrics.
type CryptoStats struct {
	Running int    // handshakes computing now (gauge)
	Waiting int    // handshakes waiting for a slot (gauge)
	Queued  uint64 // handshakes that had to wait
	Expired uint64 // gave up waiting: the handshake deadline passed
}

// Stats returns the current counters.
func (g *CryptoGate) Stats() CryptoStats {
	g.mu.Lock()
	s := CryptoStats{Running: g.running, Waiting: len(g.waiters)}
	g.mu.Unlock()
	s.Queued, s.Expired = g.queued.Load(), g.expired.Load()
	return s
}
