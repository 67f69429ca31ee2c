package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		name               string
		base               int
		floor, live, roots uint64
		want               int
	}{
		{"no floor", 100, 0, 7 * MiB, 1 * MiB, 100},
		{"GOGC=off left alone", -1, 64 * MiB, 7 * MiB, 1 * MiB, -1},
		{"live above the floor", 100, 64 * MiB, 200 * MiB, 1 * MiB, 100},
		{"live at the floor", 100, 64 * MiB, 64 * MiB, 0, 100},
		// goal = 7 + (7+1)*p/100 >= 64  =>  p >= 712.5
		{"small heap raised to the floor", 100, 64 * MiB, 7 * MiB, 1 * MiB, 713},
		{"base already beyond the floor", 1000, 64 * MiB, 7 * MiB, 1 * MiB, 1000},
		{"roots count toward the goal", 100, 64 * MiB, 8 * MiB, 8 * MiB, 350},
		// Before the first collection the goal is 4 MiB * percent / 100:
		// 1600 puts it at 64 MiB, not at gigabytes.
		{"tiny heap: the minimum goal reaches the floor first", 100, 64 * MiB, 100, 0, 1600},
		{"no collection yet", 100, 64 * MiB, 0, 0, 1600},
		{"no collection yet, globals known", 100, 64 * MiB, 0, 300 << 10, 1600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PercentFor(tc.base, tc.floor, tc.live, tc.roots); got != tc.want {
				t.Errorf("PercentFor(%d, %d, %d, %d) = %d, want %d", tc.base, tc.floor, tc.live, tc.roots, got, tc.want)
			}
			if tc.want >= 0 && tc.floor > tc.live {
				goal := max(float64(tc.live)+float64(tc.live+tc.roots)*float64(tc.want)/100, heapMinimum*float64(tc.want)/100)
				if goal < float64(tc.floor) {
					t.Errorf("goal %.0f below the floor %d", goal, tc.floor)
				}
			}
		})
	}
}

// gogc is the runtime's GC percentage now.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return gcPercentOf(s[0].Value)
}

// TestGCPercentOf: a metric this runtime lacks reads as Go's default
// rather than panicking (Value.Uint64 panics on another kind), and
// GOGC=off as -1, not 2^64-1.
func TestGCPercentOf(t *testing.T) {
	if got := gcPercentOf(metrics.Value{}); got != 100 {
		t.Errorf("gcPercentOf(a missing metric) = %d, want 100", got)
	}
	base := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(base)
	if got := gogc(); got != -1 {
		t.Errorf("under GOGC=off the percentage reads %d, want -1", got)
	}
}

// TestKeeperRaisesAndRestores runs the keeper on this test binary's own
// heap: a floor far above it raises the runtime's percentage (and with
// it the heap goal past the floor); no floor, and Stop, put the base back.
func TestKeeperRaisesAndRestores(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	runtime.GC() // a live heap on record
	const floor = 256 << 20
	k := Start(floor)
	if p := gogc(); p <= 100 || p != k.Percent() {
		t.Fatalf("with a %d-byte floor over a small heap the runtime's GOGC is %d (keeper says %d), want it raised above 100", floor, p, k.Percent())
	}
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	if goal := s[0].Value.Uint64(); goal < floor || goal > 2*floor {
		t.Errorf("heap goal %d bytes, want from the floor %d to twice it", goal, floor)
	}
	k.Set(0)
	if p := gogc(); p != 100 {
		t.Errorf("after Set(0) GOGC is %d, want the base 100", p)
	}
	k.Set(floor)
	k.Stop()
	if p := gogc(); p != 100 {
		t.Errorf("after Stop GOGC is %d, want the base 100", p)
	}
}

// TestKeeperLeavesGCOff: with GOGC=off the process chose no collection
// by size; a floor does not turn it back on.
func TestKeeperLeavesGCOff(t *testing.T) {
	base := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(base)
	k := Start(64 << 20)
	defer k.Stop()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("GOGC is %d under a floor, want it left off (-1)", p)
	}
}

// TestKeeperSleepsWithoutAFloor: a process without a floor (the default)
// pays no wake-up for it; a floor set later starts the ticking and one
// taken away stops it.
func TestKeeperSleepsWithoutAFloor(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	ticks := func(k *Keeper) int {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.ticks
	}
	const every = time.Millisecond
	k := start(0, every)
	defer k.Stop()
	time.Sleep(50 * every)
	if n := ticks(k); n != 0 {
		t.Fatalf("without a floor the keeper woke %d times in %v, want 0", n, 50*every)
	}
	k.Set(256 << 20)
	deadline := time.Now().Add(5 * time.Second)
	for ticks(k) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("with a floor the keeper woke %d times in 5 s, want it ticking every %v", ticks(k), every)
		}
		time.Sleep(every)
	}
	k.Set(0)
	time.Sleep(5 * every) // a tick already under way may still land
	n := ticks(k)
	time.Sleep(50 * every)
	if m := ticks(k); m != n {
		t.Errorf("after Set(0) the keeper woke %d more times in %v, want 0", m-n, 50*every)
	}
}
