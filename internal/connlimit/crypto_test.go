package connlimit

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestCryptoGate: at most the cap compute at once, waiters get freed
// slots in arrival order, a wait ends at its deadline, and raising the cap
// lets waiters through at once.
func TestCryptoGate(t *testing.T) {
	far := time.Now().Add(10 * time.Second)
	t.Run("cap and FIFO hand-over", func(t *testing.T) {
		g := NewCryptoGate(1)
		if err := g.Acquire(far); err != nil {
			t.Fatal(err)
		}
		order := make(chan int, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			// Start the second waiter only once the first waits.
			waitFor(t, "earlier waiters", func() bool { return g.Stats().Waiting == i })
			wg.Go(func() {
				if err := g.Acquire(far); err != nil {
					t.Error(err)
					return
				}
				order <- i
				g.Release()
			})
		}
		waitFor(t, "two waiters", func() bool { return g.Stats().Waiting == 2 })
		if st := g.Stats(); st.Running != 1 {
			t.Fatalf("%d running with a cap of 1", st.Running)
		}
		g.Release()
		wg.Wait()
		if a, b := <-order, <-order; a != 0 || b != 1 {
			t.Errorf("slots went to waiters %d then %d, want 0 then 1", a, b)
		}
		// The last release may still be in the relay (the gate paces
		// for a while after handshakes queued).
		waitFor(t, "every slot free", g.settled)
		if st := g.Stats(); st.Running != 0 || st.Waiting != 0 || st.Queued != 2 || st.Expired != 0 {
			t.Errorf("Stats = %+v, want all free, 2 queued", st)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		g := NewCryptoGate(1)
		if err := g.Acquire(far); err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		if err := g.Acquire(time.Now().Add(20 * time.Millisecond)); !errors.Is(err, ErrCryptoWait) {
			t.Fatalf("err %v, want ErrCryptoWait", err)
		}
		if st := g.Stats(); st.Waiting != 0 || st.Expired != 1 {
			t.Errorf("Stats = %+v, want no waiter left, 1 expired", st)
		}
	})
	t.Run("raised cap and no cap", func(t *testing.T) {
		g := NewCryptoGate(1)
		if err := g.Acquire(far); err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		got := make(chan error, 1)
		go func() {
			err := g.Acquire(far)
			if err == nil {
				g.Release()
			}
			got <- err
		}()
		waitFor(t, "a waiter", func() bool { return g.Stats().Waiting == 1 })
		g.setLimit(-1)
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if err := g.Acquire(time.Now()); err != nil { // no cap: never waits
			t.Fatal(err)
		}
		g.Release()
	})
	t.Run("default follows GOMAXPROCS", func(t *testing.T) {
		g := NewCryptoGate(0)
		n := runtime.GOMAXPROCS(0)
		for range n {
			if err := g.Acquire(far); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Acquire(time.Now().Add(10 * time.Millisecond)); err == nil {
			t.Error("a slot beyond GOMAXPROCS was free")
		}
		for range n {
			g.Release()
		}
	})
}
