package connlimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// settled reports whether every slot of g is free, none in transit.
func (g *CryptoGate) settled() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running == 0 && len(g.waiters) == 0 && g.inTransit == 0 &&
		len(g.notes) == 0
}

func (g *CryptoGate) hasRelay() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.relay != nil
}

// TestRelayHandOver: which releases go through the network poller's relay
// and that every slot they carry arrives (a lost one would stall every
// later handshake once GOMAXPROCS of them were lost).
func TestRelayHandOver(t *testing.T) {
	far := time.Now().Add(10 * time.Second)
	tests := []struct {
		name        string
		pace        bool // the gate paces before the release
		waiter      bool // a handshake waits for the slot
		wantRelayed uint64
	}{
		{"idle gate frees at once", false, false, 0},
		{"paced gate relays even with no waiter", true, false, 1},
		{"a waiter gets the slot through the relay", false, true, 1},
		{"paced, with a waiter", true, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewCryptoGate(1)
			if err := g.Acquire(far); err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			if tt.waiter {
				go func() {
					err := g.Acquire(far)
					if err == nil {
						g.Release()
					}
					got <- err
				}()
				waitFor(t, "the waiter", func() bool { return g.Stats().Waiting == 1 })
			}
			if tt.pace {
				g.pace()
			}
			g.Release()
			if !tt.pace && !tt.waiter {
				// Freed in the call: no poller round trip when
				// nothing queues (the cost stays off the handshake
				// benchmarks).
				if st := g.Stats(); st.Running != 0 {
					t.Fatalf("Running = %d right after an unpaced release, want 0", st.Running)
				}
			}
			if tt.waiter {
				if err := <-got; err != nil {
					t.Fatalf("the waiter got %v, want the slot", err)
				}
			}
			waitFor(t, "every slot free", g.settled)
			if st := g.Stats(); st.Relayed < tt.wantRelayed || (tt.wantRelayed == 0 && st.Relayed != 0) {
				t.Errorf("Relayed = %d, want %d", st.Relayed, tt.wantRelayed)
			}
		})
	}
}

// TestRelayEndsWhenIdle: an idle relay closes its pipe and ends; the next
// hand-over starts another.
func TestRelayEndsWhenIdle(t *testing.T) {
	g := NewCryptoGate(1)
	far := time.Now().Add(10 * time.Second)
	for round := range 2 {
		if err := g.Acquire(far); err != nil {
			t.Fatal(err)
		}
		g.pace()
		g.Release()
		waitFor(t, "every slot free", g.settled)
		if st := g.Stats(); st.Relayed != uint64(round+1) {
			t.Fatalf("round %d: Relayed = %d, want %d", round, st.Relayed, round+1)
		}
		waitFor(t, "the idle relay to end", func() bool { return !g.hasRelay() })
	}
}

// TestQueuedHandshakePacesCrypto: a connection waiting for a handshake
// slot, a flood's first sign, makes the crypto gate pace.
func TestQueuedHandshakePacesCrypto(t *testing.T) {
	l := New(Options{MaxHandshakes: 1, HandshakeQueue: 1, MaxCrypto: 1})
	done, err := l.BeginHandshake(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		if d, err := l.BeginHandshake(ctx, nil); err == nil {
			d()
		}
	}()
	waitFor(t, "a queued handshake", func() bool { return l.Stats().WaitingHandshakes == 1 })
	if err := l.AcquireCrypto(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	l.ReleaseCrypto()
	waitFor(t, "the crypto slot free", l.crypto.settled)
	if st := l.Stats(); st.Crypto.Relayed != 1 {
		t.Errorf("crypto Relayed = %d with a handshake queued, want 1 (paced)", st.Crypto.Relayed)
	}
	cancel()
	<-waited
	done()
}

// TestRelayUnderContention: many handshakes taking and freeing slots,
// some giving up at their deadline while slots are in transit, leave the
// gate with every slot free and every waiter accounted for.
func TestRelayUnderContention(t *testing.T) {
	g := NewCryptoGate(2)
	g.pace()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, expired int
	for range 32 {
		wg.Go(func() {
			for range 50 {
				d := time.Duration(rand.IntN(2000)) * time.Microsecond
				if err := g.Acquire(time.Now().Add(d)); err != nil {
					mu.Lock()
					expired++
					mu.Unlock()
					continue
				}
				if rand.IntN(4) == 0 {
					g.pace()
				}
				g.Release()
				if rand.IntN(4) == 0 {
					g.YieldToPoller() // an accept loop's burst ends
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	waitFor(t, "every slot free", g.settled)
	st := g.Stats()
	if ok+expired != 32*50 || st.Expired != uint64(expired) {
		t.Errorf("%d took a slot and %d expired of %d; gate counted %d expired", ok, expired, 32*50, st.Expired)
	}
	if ok == 0 || st.Relayed == 0 {
		t.Errorf("%d slots taken, %d relayed: the test did not exercise the relay", ok, st.Relayed)
	}
}

// TestYieldToPoller: a yield waits for the relay while the gate paces
// and costs nothing otherwise.
func TestYieldToPoller(t *testing.T) {
	g := NewCryptoGate(1)
	g.YieldToPoller()
	if g.hasRelay() {
		t.Fatal("an unpaced yield started a relay")
	}
	g.pace()
	done := make(chan struct{})
	go func() {
		g.YieldToPoller()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a paced yield never returned: its note was lost")
	}
	if !g.hasRelay() {
		t.Error("a paced yield did not go through the relay")
	}
	waitFor(t, "the yield's note read", g.settled)
}

// BenchmarkCryptoSlot: a slot taken and freed by one goroutine, with the
// gate idle (freed at once) and pacing (each slot back through the relay
// before it can be taken again: the cost of a hop, a pipe write, a poll
// and a read).
func BenchmarkCryptoSlot(b *testing.B) {
	far := time.Now().Add(time.Hour)
	for _, paced := range []bool{false, true} {
		name := "idle"
		if paced {
			name = "paced"
		}
		b.Run(name, func(b *testing.B) {
			g := NewCryptoGate(1)
			for b.Loop() {
				if paced {
					g.pace()
				}
				if err := g.Acquire(far); err != nil {
					b.Fatal(err)
				}
				g.Release()
			}
		})
	}
}

// TestRelayOneNotePerPoll: yielders queued together are let go one per run
// of the network poller, so that a connection whose data arrives while
// they compute runs after at most one of them, not after all (on one P,
// Go polls the network only when nothing else is runnable, or every 10 ms
// from sysmon). Each yielder computes for 1 ms; the first writes to a
// pipe a reader waits on. Handed over all at once, as the relay did, the
// reader waited behind every yielder (or sysmon's poll, 10 ms).
func TestRelayOneNotePerPoll(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const yielders = 40
	g := NewCryptoGate(1)
	g.pace()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	written := make(chan time.Time, 1)
	readAt := make(chan time.Time, 1)
	go func() {
		var b [1]byte
		r.Read(b[:])
		readAt <- time.Now()
	}()
	var wg sync.WaitGroup
	var once sync.Once
	start := make(chan struct{})
	for range yielders {
		wg.Go(func() {
			<-start
			g.YieldToPoller()
			once.Do(func() {
				w.Write([]byte{1})
				written <- time.Now()
			})
			for end := time.Now().Add(time.Millisecond); time.Now().Before(end); {
			}
		})
	}
	// Every yielder queues before the relay can run: they are all
	// runnable ahead of it on the one P.
	close(start)
	wg.Wait()
	wrote, read := <-written, <-readAt
	if wait := read.Sub(wrote); wait > 8*time.Millisecond {
		t.Errorf("the reader ran %v after its data was written, behind the yielders (%d x 1 ms); want at most a few of them", wait, yielders)
	}
	if st := g.Stats(); st.Yielded != yielders {
		t.Errorf("Yielded = %d, want %d", st.Yielded, yielders)
	}
	waitFor(t, "every slot free", g.settled)
}

// TestRelaySlotNotBehindLaterYielders: a crypto slot freed while the gate
// paces goes to its waiter after the yielders that were waiting before
// it, however many yield after it. Under a flood, accept loops, queue
// turns and failing handshakes yield one after another; the relay gave
// every note to a yielder while one waited, so the slot stayed in
// transit and its handshake's wait for it expired (this test's 2 s),
// with or without a CPU budget.
func TestRelaySlotNotBehindLaterYielders(t *testing.T) {
	for _, share := range []float64{1, DefaultCPUShare} {
		t.Run(fmt.Sprintf("handshake_cpu %v", share), func(t *testing.T) {
			g := NewCryptoGate(1)
			g.SetCPUShare(share)
			g.pace()
			if err := g.Acquire(time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						g.pace()
						g.YieldToPoller()
					}
				}()
			}
			time.Sleep(20 * time.Millisecond) // the yielders are under way
			g.Release()
			err := g.Acquire(time.Now().Add(2 * time.Second))
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatalf("the freed slot never reached its waiter while others yielded: %v", err)
			}
			g.Release()
		})
	}
}
