package connlimit

import (
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestCPUBudgetWait: the bucket lets a hand-over go at once while the
// process used at most its share of the CPUs, and otherwise sleeps for
// the debt, at most budgetBurst/share; no share, or one of 1 or more,
// never waits. The process's CPU time is the test's.
func TestCPUBudgetWait(t *testing.T) {
	procs := time.Duration(runtime.GOMAXPROCS(0))
	tests := []struct {
		name  string
		share float64
		used  time.Duration // CPU time used between the two calls
		// wantMin and wantMax bound the second call's sleep.
		wantMin, wantMax time.Duration
	}{
		{"no budget", 0, time.Hour, 0, 0},
		{"a share of 1 is no budget", 1, time.Hour, 0, 0},
		{"within the saved burst", 0.5, budgetBurst * procs / 2, 0, 0},
		// A debt beyond the cap sleeps the cap: budgetBurst/share, less
		// the wall time that passed between the calls (half the cap
		// allows for a busy machine; a lower bound below zero, as
		// before, let a wait of none pass).
		{"far over: the cap", 0.5, time.Hour, budgetBurst, 2 * budgetBurst},
		{"far over, a smaller share waits longer", 0.25, time.Hour, 2 * budgetBurst, 4 * budgetBurst},
		// Over the burst by one burst's worth: a debt of budgetBurst
		// per CPU, repaid at share per CPU.
		{"over by a burst", 0.5, 2 * budgetBurst * procs, budgetBurst, 2 * budgetBurst},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cpu atomic.Int64
			b := cpuBudget{clock: func() (time.Duration, bool) { return time.Duration(cpu.Load()), true }}
			if d := b.wait(tt.share); d != 0 {
				t.Fatalf("first call slept %v, want none: the bucket starts full", d)
			}
			cpu.Add(int64(tt.used))
			d := b.wait(tt.share)
			if d < tt.wantMin || d > tt.wantMax {
				t.Errorf("slept %v after %v of CPU time, want %v to %v", d, tt.used, tt.wantMin, tt.wantMax)
			}
		})
	}
}

// TestCPUBudgetOffWithoutAClock: where the process's CPU time cannot be
// read, nothing waits.
func TestCPUBudgetOffWithoutAClock(t *testing.T) {
	b := cpuBudget{clock: func() (time.Duration, bool) { return 0, false }}
	for range 3 {
		if d := b.wait(0.1); d != 0 {
			t.Fatalf("slept %v without a clock", d)
		}
	}
}

// TestCryptoGateSpendsItsBudget: while the gate paces, its relay's
// hand-overs wait whenever the process (here, a goroutine spinning on
// every CPU) used more than the gate's share, and count it; with no
// share nothing waits. The slots still go round: a budget slows
// handshakes, it does not stop them.
func TestCryptoGateSpendsItsBudget(t *testing.T) {
	if _, ok := processCPUTime(); !ok {
		t.Skip("the process's CPU time cannot be read here: no budget")
	}
	for _, tt := range []struct {
		name      string
		share     float64
		wantWaits bool
	}{
		{"share 0.1", 0.1, true},
		{"no budget", 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewCryptoGate(1)
			g.SetCPUShare(tt.share)
			stop := make(chan struct{})
			defer close(stop)
			for range runtime.GOMAXPROCS(0) {
				go func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						for i := 0; i < 1e5; i++ {
						}
					}
				}()
			}
			// Hand-overs for half a second (the bucket starts with a
			// burst saved), or until one waited.
			end := time.Now().Add(500 * time.Millisecond)
			for time.Now().Before(end) && g.Stats().BudgetWaits == 0 {
				g.pace()
				if err := g.Acquire(end.Add(10 * time.Second)); err != nil {
					t.Fatal(err)
				}
				g.Release()
			}
			st := g.Stats()
			if got := st.BudgetWaits > 0 && st.BudgetWaited > 0; got != tt.wantWaits {
				t.Errorf("budget waits %d (%v), want some: %v", st.BudgetWaits, st.BudgetWaited, tt.wantWaits)
			}
			if st.Relayed == 0 {
				t.Error("no slot went through the relay: the gate did not pace")
			}
		})
	}
}

// TestCPUBudgetShareBounded: whatever share the gate is given, a hop of
// its relay waits at most budgetBurst/MinCPUShare however far the
// process is over its budget, and a share that is not a number turns the
// budget off. Before the floor, a share of 1e-9 made a hop sleep
// budgetBurst/1e-9 (23 days) with the slot it carried, and NaN made the
// bucket's sums NaN and the relay spin without handing anything over:
// either stopped every handshake.
func TestCPUBudgetShareBounded(t *testing.T) {
	tests := []struct {
		name     string
		share    float64
		wantWait bool // whether the hop over its budget waits at all
	}{
		{"1e-9: the floor", 1e-9, true},
		{"0.0001: the floor", 1e-4, true},
		{"just below the floor", MinCPUShare / 2, true},
		{"at the floor", MinCPUShare, true},
		{"NaN: no budget", math.NaN(), false},
		{"+Inf: no budget", math.Inf(1), false},
		{"-Inf: no budget", math.Inf(-1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewCryptoGate(1)
			g.SetCPUShare(tt.share)
			var cpu atomic.Int64
			b := cpuBudget{clock: func() (time.Duration, bool) { return time.Duration(cpu.Load()), true }}
			done := make(chan struct{})
			go func() {
				defer close(done)
				g.spendBudget(&b) // starts the bucket, full
				cpu.Add(int64(time.Hour))
				g.spendBudget(&b) // far over: the debt's cap
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("a hop over its budget did not return within 5 s")
			}
			st := g.Stats()
			if got := st.BudgetWaits > 0; got != tt.wantWait {
				t.Errorf("hops that waited: %d, want some: %v", st.BudgetWaits, tt.wantWait)
			}
			if limit := time.Duration(float64(budgetBurst)/MinCPUShare) + time.Microsecond; st.BudgetWaited > limit {
				t.Errorf("the hop waited %v, want at most %v (budgetBurst/MinCPUShare)", st.BudgetWaited, limit)
			}
		})
	}
}
