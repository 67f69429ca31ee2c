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
	rl := &pollRelay{g: g, r: r, w: w}
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
func (rl *pollRelay) run() {
	var buf [64]byte
	for {
		rl.r.SetReadDeadline(time.Now().Add(relayIdle))
		n, err := rl.r.Read(buf[:])
		if n > 0 {
			rl.g.dispatch(n)
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) && err != nil {
			break // the pipe failed: end, as when idle
		}
		if rl.g.endRelay(rl) {
			break
		}
	}
	rl.g.mu.Lock()
	if rl.g.relay == rl {
		rl.g.relay = nil
	}
	rl.g.mu.Unlock()
	rl.close()
}

// close closes the pipe; notes still in it are handed over directly, so
// no slot is lost.
func (rl *pollRelay) close() {
	rl.w.Close()
	var buf [64]byte
	for {
		rl.r.SetReadDeadline(time.Now())
		n, _ := rl.r.Read(buf[:])
		if n == 0 {
			break
		}
		rl.g.dispatch(n)
	}
	rl.r.Close()
}
