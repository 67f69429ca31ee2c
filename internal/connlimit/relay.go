package connlimit

import (
	"errors"
	"os"
	"time"
)

// pollRelay carries crypto slots freed while handshakes wait to the next
// waiter through Go's network poller instead of directly.
//
// Why: Go's scheduler looks for goroutines woken by the network (the
// requests of established connections) only when it has nothing else to
// run, or every 10 ms from sysmon (runtime/proc.go, findRunnable). A slot
// handed from handshake to handshake directly, however fairly queued,
// keeps a saturated P busy from one handshake's cryptography to the next,
// so requests waited up to 10 ms at each of their three network waits
// (client, upstream, client): 15-80 ms of p99 under a flood, against 2-7
// ms unloaded (docs/BENCHMARKS.md, "Overload"). Through the relay, the
// next handshake is woken by the poller in the same poll that wakes every
// connection whose data arrived meanwhile: a request waits behind one
// handshake's cryptography at most (~0.15-0.7 ms), not behind a chain of
// them. When nothing else waits, the poll returns at once: a hand-over
// through the relay (pipe write, poll, read) takes ~11 µs against ~0.1
// µs directly (BenchmarkCryptoSlot), paid only while the gate paces.
//
// A relay is started by its gate at the first hand-over and ends itself
// (closing its pipe) after relayIdle without one, so that an idle server
// holds no goroutine or descriptors for it.
type pollRelay struct {
	g    *CryptoGate
	r, w *os.File
	// kicks: bytes the relay wrote itself and has not read back (only
	// run and close touch it).
	kicks int
	// budget is the gate's CPU budget's bucket (budget.go), kept by run.
	budget cpuBudget
}

// relayIdle is how long a relay waits for a hand-over before it ends:
// long enough that a flood's bursts reuse one relay.
const relayIdle = time.Second

// startRelay makes g's relay; g.mu is held. It returns nil when no pipe
// could be made (out of descriptors): the gate then hands slots over
// directly, as without a relay.
func startRelay(g *CryptoGate) *pollRelay {
	r, w, err := os.Pipe()
	if err != nil {
		return nil
	}
	rl := &pollRelay{g: g, r: r, w: w, budget: cpuBudget{clock: processCPUTime}}
	go rl.run()
	return rl
}

// notify writes one note, a freed slot's or a yielder's (YieldToPoller);
// g.mu is not held. A failed write (the relay ended meanwhile) delivers
// the note directly.
func (rl *pollRelay) notify() {
	if _, err := rl.w.Write([]byte{0}); err != nil {
		rl.g.dispatch(1)
	}
}

// run reads hand-over notes until none came for relayIdle, then ends the
// relay. Each byte read is one note: dispatch wakes a yielder, or gives a
// freed slot to the longest waiter, or frees it when none is left.
//
// It hands over one note per run of the poller: notes that arrived
// together (a queue's connections handed their slots one after another,
// each closing at once because its client had left) would otherwise run
// back to back, hundreds in a row in a trace, with no poll between. So
// with notes left over it drains the pipe, writes itself one byte (a
// kick) and waits for the poller to report it before the next note. The
// kick is written inside RawConn.Read's callback, after the poll
// descriptor's readiness was reset, so that the poller's report of it
// cannot be lost, and into an empty pipe, so that it makes an edge on any
// kernel.
//
// Before each hand-over it spends the gate's CPU budget (budget.go): while
// the process used more than its share of the CPUs, the hand-over waits,
// and with it everything the relay paces (handshakes' cryptography, queue
// turns, failed handshakes' cleanup, the accept loops' yields).
func (rl *pollRelay) run() {
	rc, err := rl.r.SyscallConn()
	pending := 0 // notes read and not dispatched yet
	var buf [64]byte
	for err == nil {
		rl.r.SetReadDeadline(time.Now().Add(relayIdle))
		n, kick, eof := 0, pending > 0, false
		rerr := rc.Read(func(fd uintptr) bool {
			var m int
			m, eof = drainPipe(fd, buf[:])
			n += m
			if eof {
				return true // cannot happen before close: end
			}
			if kick {
				kick = false
				if _, werr := rl.w.Write([]byte{0}); werr == nil {
					rl.kicks++
					return false
				}
				return true // no kick: go on without the poller
			}
			return n > 0
		})
		if eof {
			break
		}
		if n > 0 {
			// The kicks written before were drained with the notes.
			k := min(rl.kicks, n)
			rl.kicks -= k
			pending += n - k
		}
		if pending > 0 {
			pending--
			rl.g.spendBudget(&rl.budget)
			rl.g.dispatch(1)
			continue
		}
		if rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
			break // the pipe failed: end, as when idle
		}
		if rerr != nil && rl.g.endRelay(rl) {
			break
		}
	}
	rl.g.mu.Lock()
	if rl.g.relay == rl {
		rl.g.relay = nil
	}
	rl.g.mu.Unlock()
	rl.close(pending)
}

// close closes the pipe; pending notes and those still in it are handed
// over directly, so no slot is lost.
func (rl *pollRelay) close(pending int) {
	rl.w.Close()
	var buf [64]byte
	for {
		rl.r.SetReadDeadline(time.Now())
		n, _ := rl.r.Read(buf[:])
		if n == 0 {
			break
		}
		k := min(rl.kicks, n)
		rl.kicks -= k
		pending += n - k
	}
	if pending > 0 {
		rl.g.dispatch(pending)
	}
	rl.r.Close()
}
