// Package heapfloor keeps Go's garbage collector from running more often
// than a heap of a given size needs: below the floor, the collector's
// percentage (GOGC) is raised so that the next collection starts no
// earlier than at the floor; above it, the percentage is the process's
// own (GOGC, default 100).
//
// Why: under a flood of new TLS handshakes pqedge's live heap is small
// (~7 MB: the handshakes in progress and the queue) but it allocates
// ~120 MB/s (crypto/tls's buffers, keys and transcripts, ~150 KB a
// handshake), so at GOGC=100 the collector ran 10-12 times a second,
// each mark phase 10-30 ms long, ~20% of the front's core with its
// assists and stack scans (docs/BENCHMARKS.md "Overload", set M). A
// floor of 64 MiB cut that to ~2.5 collections a second, for up to the
// floor in memory, while a large heap (many established connections) is
// collected at GOGC as before; a memory limit (GOMEMLIMIT) still applies
// on top. It is off by default (limits.heap_floor): under the flood the
// front completed more handshakes with it, but keep-alive latency did
// not change beyond the runs' noise.
//
// Go has no minimum heap target of its own (golang/go#44309 discusses
// one); the percentage is set with debug.SetGCPercent, which takes effect
// at once and costs no stop of the world, from the live heap that
// runtime/metrics reports after each collection.
package heapfloor

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Interval is how often a Keeper looks at the live heap.
const Interval = 500 * time.Millisecond

// heapMinimum is Go's smallest heap goal at GOGC=100, scaled by the
// percentage like the goal itself (runtime/mgcpacer.go,
// defaultHeapMinimum): before the first collection, and whenever the
// live heap is tiny, the goal is heapMinimum * percent / 100.
const heapMinimum = 4 << 20

// PercentFor is the smallest GC percentage, and at least base, that
// starts the next collection at the heap goal floor (bytes) or later:
// base when base already does, or when base < 0 (GOGC=off) or floor is 0.
// live is the heap the last collection left (bytes; 0 before the first),
// roots the goroutine stacks and globals it scanned (bytes). Go's goal
// is the larger of live + (live + roots) * percent / 100 (the GC pacer
// since Go 1.18) and heapMinimum * percent / 100, so the percentage is
// the smaller of the two that reach the floor: never more than
// floor / heapMinimum * 100, which also bounds it before the first
// collection, when live is 0.
func PercentFor(base int, floor, live, roots uint64) int {
	if base < 0 || floor == 0 || live >= floor {
		return base
	}
	p := math.Ceil(float64(floor) * 100 / heapMinimum)
	if scanned := live + roots; scanned > 0 {
		p = min(p, math.Ceil(float64(floor-live)*100/float64(scanned)))
	}
	return max(base, int(p))
}

// Keeper adjusts the GC percentage to its floor every Interval until
// Stop; without a floor it does not wake at all. Its methods are safe
// for concurrent use.
type Keeper struct {
	mu      sync.Mutex
	floor   uint64        // bytes; 0: none
	base    int           // the process's own percentage (GOGC at Start)
	current int           // the percentage last set
	changed chan struct{} // a floor was Set (capacity 1)
	every   time.Duration // Interval; shorter in tests
	ticks   int           // wake-ups of the ticker, for tests
	stop    chan struct{}
	done    chan struct{}
	samples []metrics.Sample
}

// Start reads the process's GC percentage (GOGC) as the base and starts
// keeping floor (bytes; 0: none until Set).
func Start(floor uint64) *Keeper { return start(floor, Interval) }

func start(floor uint64, every time.Duration) *Keeper {
	k := &Keeper{floor: floor, every: every, changed: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), samples: []metrics.Sample{
		{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	metrics.Read(k.samples[:1])
	k.base = gcPercentOf(k.samples[0].Value)
	k.current = k.base
	k.adjust()
	go k.run()
	return k
}

// gcPercentOf reads /gc/gogc:percent: the runtime reports GOGC=off (-1)
// as the uint64 of -1. A runtime without the metric (KindBad) is taken to
// run at Go's default, 100.
func gcPercentOf(v metrics.Value) int {
	if v.Kind() != metrics.KindUint64 {
		return 100
	}
	return int(int64(v.Uint64()))
}

// Set changes the floor (bytes; 0: none, the base percentage again); it
// takes effect at once.
func (k *Keeper) Set(floor uint64) {
	k.mu.Lock()
	k.floor = floor
	k.mu.Unlock()
	k.adjust()
	select {
	case k.changed <- struct{}{}:
	default: // the keeper has yet to see an earlier change; it reads the floor then
	}
}

// Percent is the GC percentage the keeper last set.
func (k *Keeper) Percent() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current
}

// Stop ends the keeping and restores the base percentage.
func (k *Keeper) Stop() {
	close(k.stop)
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.current != k.base {
		debug.SetGCPercent(k.base)
		k.current = k.base
	}
}

// run ticks every Interval while there is a floor, and waits for Set
// while there is none.
func (k *Keeper) run() {
	defer close(k.done)
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		k.mu.Lock()
		ticking := k.floor > 0
		k.mu.Unlock()
		if ticking {
			t.Reset(k.every)
		} else {
			t.Stop()
		}
		select {
		case <-k.stop:
			return
		case <-k.changed:
		case <-t.C:
			k.mu.Lock()
			k.ticks++
			k.mu.Unlock()
			k.adjust()
		}
	}
}

// adjust sets the percentage for the floor and the heap the last
// collection left, when it differs from the one set by more than a tenth
// (a collection's live heap moves a little each time).
func (k *Keeper) adjust() {
	k.mu.Lock()
	defer k.mu.Unlock()
	metrics.Read(k.samples[1:])
	var v [3]uint64
	for i, s := range k.samples[1:] {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	want := PercentFor(k.base, k.floor, v[0], v[1]+v[2])
	if want == k.current || (want != k.base && k.current != k.base && math.Abs(float64(want-k.current)) <= float64(k.current)/10) {
		return
	}
	debug.SetGCPercent(want)
	k.current = want
}
