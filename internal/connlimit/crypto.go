package connlimit

import (
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrCryptoWait is Acquire's error when the deadline passed before a
// crypto slot was free.
var ErrCryptoWait = errors.New("handshake deadline passed waiting for a crypto slot")

// CryptoGate bounds the handshakes using the CPU at once (key exchange
// and signature: ~0.15 ms with ECDSA, up to ~0.7 ms with ML-DSA,
// docs/BENCHMARKS.md "The primitives alone") to the number of CPUs Go runs
// on, GOMAXPROCS, read at each Acquire since the runtime updates it when
// the CPU affinity or the cgroup quota changes.
//
// Why not only MaxHandshakes: a handshake slot is held from before the
// ClientHello to the client's Finished, mostly waiting on the network, so
// MaxHandshakes must be in the hundreds for clients across the world. But
// Go's scheduler runs ready goroutines first come, first served: with
// hundreds of handshakes ready to compute, a request on an established
// connection waits behind all of them (measured: 256 handshakes in
// progress put 60-140 ms on a keep-alive request's p50 on one core,
// docs/BENCHMARKS.md "Overload"). Handshakes that wait here are parked,
// not ready.
//
// That alone is not enough on a busy CPU: handshakes that find a slot
// free in turn still run one after another, and Go's scheduler polls the
// network, where established connections' requests come from, only when
// it has nothing else to run or every 10 ms. So while handshakes queue,
// the gate paces them: a freed slot goes through the relay (pollRelay),
// which hands it on only when the network poller runs, in the same poll
// that readies the established connections whose data arrived
// meanwhile. A request then waits behind one burst of a handshake's
// cryptography at most.
//
// The server takes a slot for each burst of a handshake's CPU, from a
// read's return to its next read (a client that sends nothing holds no
// slot). It is safe for concurrent use; the zero value is not usable:
// use NewCryptoGate.
type CryptoGate struct {
	mu      sync.Mutex      // guards the fields below
	fixed   int             // > 0: the cap; 0: GOMAXPROCS; < 0: no cap
	running int             // slots taken, in transit ones included
	waiters []*cryptoWaiter // FIFO
	// relay carries freed slots to waiters through the network poller
	// (relay.go); inTransit is how many it has yet to hand over.
	relay     *pollRelay
	inTransit int
	// notes are the relay's notes in the order they were made, one for
	// each it has yet to hand over: nil for a freed slot (inTransit
	// counts these), or the channel of a yielder waiting in
	// YieldToPoller for the poller to run. In order, so that a slot
	// goes on behind the yielders that came before it, not behind every
	// one that comes after.
	notes []chan struct{}
	// pacedUntil is when pacing ends (pace): until then every freed
	// slot goes through the relay, waiters or not.
	pacedUntil time.Time

	queued, expired, relayed, yielded atomic.Uint64
	// cpuShare is the CPU budget's share (math.Float64bits; 0: none);
	// budgetWaits and budgetWaited count the hand-overs that waited for
	// it and their time in ns (spendBudget).
	cpuShare                  atomic.Uint64
	budgetWaits, budgetWaited atomic.Uint64
}

// cryptoWaiter is a handshake waiting for a crypto slot; its channel is
// closed when a slot is handed over.
type cryptoWaiter struct{ ch chan struct{} }

// NewCryptoGate returns a gate of GOMAXPROCS slots; n > 0 fixes the cap
// at n instead, n < 0 turns the gate off. It has no CPU budget until
// SetCPUShare.
func NewCryptoGate(n int) *CryptoGate { return &CryptoGate{fixed: n} }

// SetCPUShare sets the gate's CPU budget: while it paces, a freed slot (or
// any other hand-over of the relay) waits until the process has used at
// most share of the CPUs Go runs on (GOMAXPROCS), measured as its CPU
// time (all threads: the collector and the established connections
// too). share <= 0, >= 1 or NaN turns the budget off, as does a system
// whose process CPU time cannot be read (Windows); a share below
// MinCPUShare is raised to it, so that a hop waits at most
// budgetBurst/MinCPUShare (20 ms). Options.CPUShare says why.
func (g *CryptoGate) SetCPUShare(share float64) {
	switch {
	case !(share > 0 && share < 1):
		share = 0 // NaN too: it compares false, and would make the bucket's sums NaN
	case share < MinCPUShare:
		share = MinCPUShare
	}
	g.cpuShare.Store(math.Float64bits(share))
}

// spendBudget waits, in the relay's goroutine, until b is out of debt at
// the gate's share, and counts the wait.
func (g *CryptoGate) spendBudget(b *cpuBudget) {
	if d := b.wait(math.Float64frombits(g.cpuShare.Load())); d > 0 {
		g.budgetWaits.Add(1)
		g.budgetWaited.Add(uint64(d))
	}
}

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
		g.running++
		g.handOver()
	}
}

// Acquire takes a crypto slot, waiting for one in FIFO order until
// deadline, and returns ErrCryptoWait when the deadline passed first. On
// success the caller must call Release exactly once when its burst of
// CPU is over.
func (g *CryptoGate) Acquire(deadline time.Time) error {
	g.mu.Lock()
	if n := g.limit(); n == 0 || g.running < n {
		g.running++
		g.mu.Unlock()
		return nil
	}
	w := &cryptoWaiter{ch: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	g.pacedUntil = time.Now().Add(pacedHold)
	g.mu.Unlock()
	g.queued.Add(1)

	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.ch:
		// The slot was handed over, by the relay in the same run of the
		// network poller that woke the established connections whose
		// data arrived meanwhile. Closing w.ch put this goroutine in
		// its P's runnext, ahead of them; yielding puts it at the back
		// of the global queue, behind them. (Without either, the
		// handshakes chained through runnext from one to the next and
		// requests waited for seconds: docs/BENCHMARKS.md, "Overload".)
		runtime.Gosched()
		return nil
	case <-t.C:
	}
	g.mu.Lock()
	for i, x := range g.waiters {
		if x == w {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			g.mu.Unlock()
			g.expired.Add(1)
			return ErrCryptoWait
		}
	}
	g.mu.Unlock()
	// A slot was handed over as the deadline passed: pass it on.
	g.Release()
	g.expired.Add(1)
	return ErrCryptoWait
}

// Release frees a slot taken by Acquire. While handshakes wait, or
// while the gate paces (pace), it goes through the relay (pollRelay),
// which gives it to the longest waiter, or frees it, only when the
// network poller runs next; without a relay it goes to the longest
// waiter directly. Otherwise, or when the cap dropped since the slot was
// taken, it is freed at once.
func (g *CryptoGate) Release() {
	g.mu.Lock()
	n := g.limit()
	if n != 0 && g.running <= n && (len(g.waiters) > g.inTransit || time.Now().Before(g.pacedUntil)) {
		if rl := g.currentRelay(); rl != nil {
			g.inTransit++
			g.notes = append(g.notes, nil)
			g.mu.Unlock()
			g.relayed.Add(1)
			rl.notify()
			return
		}
		if len(g.waiters) > 0 {
			g.handOver()
			g.mu.Unlock()
			return
		}
	}
	g.running--
	g.mu.Unlock()
}

// pacedHold is how long pacing lasts after the last handshake queued.
const pacedHold = 100 * time.Millisecond

// pace makes the gate pace for pacedHold: every freed slot goes through
// the relay, so that a handshake's cryptography never starts straight
// after another's, only after the network poller ran. Handshakes that
// find a free slot in turn do not queue here: on one CPU they run one
// after another as the scheduler takes them from its run queue, ahead of
// the established connections the poller readies meanwhile (a trace
// under a flood showed requests ready for 11 ms while 25 handshakes ran
// back to back). The server calls pace when handshakes queue for a
// handshake slot (Limiter.ReserveHandshake), a flood's first sign; the
// gate paces itself when they queue for a crypto slot. A relay hop takes
// ~11 µs per burst of a handshake's CPU (BenchmarkCryptoSlot), paid only
// while pacing.
func (g *CryptoGate) pace() {
	g.mu.Lock()
	g.pacedUntil = time.Now().Add(pacedHold)
	g.mu.Unlock()
}

// handOver gives a taken slot to the longest waiter; g.mu is held and
// there is a waiter.
func (g *CryptoGate) handOver() {
	w := g.waiters[0]
	g.waiters[0] = nil
	g.waiters = g.waiters[1:]
	close(w.ch)
}

// dispatch delivers the n oldest notes the relay carried: a yielder's
// lets it go on; a freed slot's goes to the longest waiter while the cap
// allows, or is freed (its waiters gave up meanwhile).
func (g *CryptoGate) dispatch(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The pipe's bytes look alike: each goes to the oldest note. (Given
	// to yielders first, as before, a slot's note waited behind every
	// yielder that came after it: accept loops, queue turns and failed
	// handshakes yielding one after another kept a crypto slot in
	// transit until its waiter's deadline passed.)
	for range min(n, len(g.notes)) {
		ch := g.notes[0]
		g.notes[0] = nil
		g.notes = g.notes[1:]
		if ch != nil {
			close(ch)
			continue
		}
		g.inTransit--
		if l := g.limit(); len(g.waiters) > 0 && (l == 0 || g.running <= l) {
			g.handOver()
		} else {
			g.running--
		}
	}
}

// YieldToPoller waits, while the gate paces (pace), until Go's network
// poller has run once, so that the established connections whose data
// arrived meanwhile run before the caller goes on; otherwise it returns
// at once. An accept loop calls it every few connections: under a flood
// it otherwise accepts (and refuses) thousands in a row, ~9 µs each,
// while requests wait (a trace showed 2,900 in 26 ms).
func (g *CryptoGate) YieldToPoller() { g.yieldToPoller() }

// yieldToPoller is YieldToPoller, reporting whether it waited for the
// poller (false: the gate does not pace, or has no relay).
func (g *CryptoGate) yieldToPoller() bool {
	g.mu.Lock()
	if !time.Now().Before(g.pacedUntil) {
		g.mu.Unlock()
		return false
	}
	rl := g.currentRelay()
	if rl == nil {
		g.mu.Unlock()
		return false
	}
	ch := make(chan struct{})
	g.notes = append(g.notes, ch)
	g.mu.Unlock()
	rl.notify()
	<-ch
	g.yielded.Add(1)
	return true
}

// currentRelay is g's relay, started if none runs; nil when none could
// be started. g.mu is held.
func (g *CryptoGate) currentRelay() *pollRelay {
	if g.relay == nil {
		g.relay = startRelay(g)
	}
	return g.relay
}

// endRelay reports whether rl, idle, may end: only when it has no slot
// to carry. It then stops being g's relay.
func (g *CryptoGate) endRelay(rl *pollRelay) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.relay == rl && len(g.notes) > 0 {
		return false
	}
	if g.relay == rl {
		g.relay = nil
	}
	return true
}

// CryptoStats are the gate's counters, for metrics.
type CryptoStats struct {
	Running int    // handshakes computing now (gauge)
	Waiting int    // handshakes waiting for a slot (gauge)
	Queued  uint64 // handshakes that had to wait
	Expired uint64 // gave up waiting: the handshake deadline passed
	// Relayed is slots freed through the relay (pollRelay): handed over
	// while handshakes waited or the gate paced.
	Relayed uint64
	// Yielded is waits for the poller through the relay (YieldToPoller,
	// and a queued handshake handed its slot while the gate paces).
	Yielded uint64
	// BudgetWaits is hand-overs of the relay that waited for the CPU
	// budget (SetCPUShare), BudgetWaited their time in all.
	BudgetWaits  uint64
	BudgetWaited time.Duration
}

// Stats returns the current counters.
func (g *CryptoGate) Stats() CryptoStats {
	g.mu.Lock()
	s := CryptoStats{Running: g.running, Waiting: len(g.waiters)}
	g.mu.Unlock()
	s.Queued, s.Expired, s.Relayed, s.Yielded = g.queued.Load(), g.expired.Load(), g.relayed.Load(), g.yielded.Load()
	s.BudgetWaits, s.BudgetWaited = g.budgetWaits.Load(), time.Duration(g.budgetWaited.Load())
	return s
}
