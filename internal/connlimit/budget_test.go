package connlimit

import (
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
		// the wall time that passed between the calls.
		{"far over: the cap", 0.5, time.Hour, 2*budgetBurst - 50*time.Millisecond, 2 * budgetBurst},
		{"far over, a smaller share waits longer", 0.25, time.Hour, 4*budgetBurst - 50*time.Millisecond, 4 * budgetBurst},
		// Over the burst by one burst's worth: a debt of budgetBurst
		// per CPU, repaid at share per CPU.
		{"over by a burst", 0.5, 2 * budgetBurst * procs, 2*budgetBurst - 50*time.Millisecond, 2 * budgetBurst},
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
