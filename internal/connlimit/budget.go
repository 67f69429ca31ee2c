package connlimit

// The crypto gate's CPU budget: the share of the server's CPUs that a
// flood's work may take while handshakes queue.

import (
	"runtime"
	"time"
)

// DefaultCPUShare is the share of the CPUs Go runs on (GOMAXPROCS) that
// the work the relay paces may take while handshakes queue: a fifth is
// left idle for established connections (Options.CPUShare says why).
const DefaultCPUShare = 0.8

// MinCPUShare is the smallest share the budget takes; SetCPUShare raises
// a smaller one to it. A hop in debt waits up to budgetBurst/share, so
// the share bounds the relay's slowest pace: 20 ms a hop (~50 a second)
// at a tenth, but 200 ms at 0.01 and days at 1e-9, where a flood's
// handshakes, and every crypto slot held in transit, would stop.
const MinCPUShare = 0.1

// budgetBurst is how much CPU time, per CPU, the budget lets a quiet
// spell save up: a few handshakes' bursts (~0.3 ms each with ML-KEM and
// ECDSA, docs/BENCHMARKS.md "The primitives alone"). It also bounds the
// debt: a hop waits at most budgetBurst/share, so that handshakes go on
// (~400 hops a second at least) even while established connections alone
// take more than the share.
const budgetBurst = 2 * time.Millisecond

// cpuBudget is a token bucket of the process's CPU time, filled at
// share x GOMAXPROCS CPU-seconds per second and drained by every
// CPU-second the process used, whatever used it: handshakes, accepts and
// closes, the collector, the established connections. The relay waits
// (wait) before each hand-over while the bucket is in debt, so that the
// process's CPUs idle for the rest of the time. Only the relay's
// goroutine uses it.
type cpuBudget struct {
	// clock is the process's CPU time; ok false where it cannot be read
	// (the budget is then off).
	clock func() (time.Duration, bool)

	started bool      // the fields below hold a reading
	lastAt  time.Time // when the last reading was taken
	lastCPU time.Duration
	tokens  time.Duration // CPU time left to spend; negative: debt
}

// wait returns when the bucket is out of debt at share (of GOMAXPROCS;
// 0, NaN, or 1 and more: no budget), sleeping once for the debt if there
// is one, and reports how long it slept: at most budgetBurst/share
// (SetCPUShare keeps share at MinCPUShare or more).
func (b *cpuBudget) wait(share float64) time.Duration {
	if !(share > 0 && share < 1) {
		b.started = false // a budget set again starts afresh
		return 0
	}
	procs := time.Duration(runtime.GOMAXPROCS(0))
	if !b.read(share, procs) || b.tokens >= 0 {
		return 0
	}
	d := time.Duration(float64(-b.tokens) / (share * float64(procs)))
	time.Sleep(d)
	b.read(share, procs) // the sleep's refill, so the next hop starts level
	return d
}

// read fills the bucket for the wall time since the last reading at
// share x procs and drains it by the CPU time used meanwhile, within
// +-budgetBurst per CPU; the first reading fills it. It reports false
// when the clock cannot be read.
func (b *cpuBudget) read(share float64, procs time.Duration) bool {
	cpu, ok := b.clock()
	if !ok {
		return false
	}
	now := time.Now()
	if !b.started {
		b.started, b.tokens = true, budgetBurst*procs
	} else {
		b.tokens += time.Duration(float64(now.Sub(b.lastAt))*share)*procs - (cpu - b.lastCPU)
		b.tokens = min(max(b.tokens, -budgetBurst*procs), budgetBurst*procs)
	}
	b.lastAt, b.lastCPU = now, cpu
	return true
}
