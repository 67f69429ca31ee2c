package connlimit

// Handshake slots, their queue, and the accept loops' pause while both
// are full.

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"time"
)

// BeginHandshake takes a handshake slot for a connection from addr,
// waiting for one in FIFO order if MaxHandshakes are in progress, until
// ctx ends (give it the handshake deadline). It fails at once with
// ErrHandshakeQueue when HandshakeQueue connections are already waiting,
// or ErrTooManyHandshakesFromClient. On success the caller must call done
// when the handshake has finished, failed or not. It is ReserveHandshake
// and HandshakeTicket.Wait in one call.
func (l *Limiter) BeginHandshake(ctx context.Context, addr net.Addr) (done func(), err error) {
	t, err := l.ReserveHandshake(addr)
	if err != nil {
		return nil, err
	}
	return t.wait(ctx)
}

// HandshakeTicket is a connection's place taken by ReserveHandshake: a
// handshake slot, or a place in the queue for one. Exactly one of Wait
// and Cancel must be called on it, once.
type HandshakeTicket struct {
	l  *Limiter
	ch chan struct{} // nil: a slot was free; else closed when one is handed over
	// client is the address the place is counted against (pending),
	// when keyed.
	client netip.Addr
	keyed  bool
	// leftFull: this reservation took the last slot or queue place.
	leftFull bool
	// p is the place's entry in the watched list (evict.go), nil when
	// the connection is not watched.
	p *place
}

// waiter is a handshake waiting in the queue: the channel closed when a
// slot is handed over, and its watched place if any.
type waiter struct {
	ch chan struct{}
	p  *place
}

// LeftFull reports whether the reservation took the last free slot or
// queue place, so that the next connection would be refused: an accept
// loop then waits for room (WaitForRoom) without asking the limiter again
// for each connection.
func (t HandshakeTicket) LeftFull() bool { return t.leftFull }

// Queued reports whether the ticket was a place in the queue rather than
// a free slot: its connection waited, and its client may have given up
// meanwhile (a flood's attempts do).
func (t HandshakeTicket) Queued() bool { return t.ch != nil }

// ReserveHandshake takes a handshake slot for a connection from addr if
// one is free, otherwise a place in the queue, without waiting; it fails
// with ErrHandshakeQueue (counted as refused) when every slot is taken
// and the queue is full, otherwise with ErrTooManyHandshakesFromClient
// when addr's client address holds MaxHandshakesPerClient slots and
// places already (a non-IP addr is not counted per client).
// An accept loop calls it for each connection before starting its
// goroutine, which then waits (HandshakeTicket.Wait): the limiter is full
// as soon as the accepted connections fill it, so the loop pauses
// (WaitForRoom) instead of accepting connections that would find the
// queue full once their goroutines ran.
func (l *Limiter) ReserveHandshake(addr net.Addr) (HandshakeTicket, error) {
	return l.reserve(addr, nil)
}

// ReserveWatchedHandshake is ReserveHandshake for a connection the
// limiter may evict while handshakes wait, if w says its client has kept
// the handshake waiting for IdleGrace (evict.go); a ticket whose
// connection was evicted fails its Wait with ErrEvicted. A reservation
// that gets a slot at once costs nothing more than ReserveHandshake's; one
// that queues runs an eviction pass and arms the limiter's timer.
func (l *Limiter) ReserveWatchedHandshake(addr net.Addr, w Watcher) (HandshakeTicket, error) {
	return l.reserve(addr, w)
}

func (l *Limiter) reserve(addr net.Addr, w Watcher) (HandshakeTicket, error) {
	key, keyed := clientKey(addr)
	l.mu.Lock()
	// A full limiter refuses as full whoever asks, so that the accept
	// loop pauses (WaitForRoom) instead of accepting and closing the
	// connections of addresses at their own cap for as long as others
	// fill the rest: a per-client refusal means there was room.
	if l.full() {
		l.mu.Unlock()
		l.hsRefused.Add(1)
		return HandshakeTicket{}, ErrHandshakeQueue
	}
	if keyed && l.opts.MaxHandshakesPerClient > 0 && l.pending[key] >= l.opts.MaxHandshakesPerClient {
		l.mu.Unlock()
		l.hsRefusedClient.Add(1)
		return HandshakeTicket{}, ErrTooManyHandshakesFromClient
	}
	t := HandshakeTicket{l: l, client: key, keyed: keyed}
	var now time.Time
	if w != nil {
		now = time.Now()
		t.p = &place{since: now, check: now, w: w, client: key, keyed: keyed}
		l.linkPlace(t.p)
	}
	if l.opts.MaxHandshakes <= 0 || l.running < l.opts.MaxHandshakes {
		l.running++
	} else {
		t.ch = make(chan struct{})
		l.waiters = append(l.waiters, waiter{ch: t.ch, p: t.p})
		if t.p != nil {
			t.p.queued = true
		}
	}
	if keyed {
		l.pending[key]++
	}
	t.leftFull = l.full()
	var closers []*place
	if t.ch != nil || t.leftFull {
		// Pressure: idle connections give way to this one (evict.go).
		if now.IsZero() {
			now = time.Now()
		}
		closers = l.evictIdle(now)
		l.armEvict()
	}
	l.mu.Unlock()
	closeEvicted(closers)
	if t.ch != nil {
		l.queued.Add(1)
		l.crypto.pace()
	}
	return t, nil
}

// HasClient reports whether the ticket's place counts against a client
// address (MaxHandshakesPerClient).
func (t HandshakeTicket) HasClient() bool { return t.keyed }

// SetClient counts the place of a ticket reserved without a client
// address (ReserveHandshake(nil)) against addr's client from now on: a
// trusted load balancer's connection, whose client is known only once its
// PROXY header is read. It fails with ErrTooManyHandshakesFromClient
// (counted) when that client holds MaxHandshakesPerClient places already;
// the ticket is then unchanged and must still be waited for or cancelled.
// It fails with ErrEvicted when the limiter evicted the connection
// meanwhile (its client's first bytes, the header, arrived after the
// eviction pass found it silent or stalled): the place is freed already, and
// counting it now would hold one of the client's places for good.
// A ticket that has a client, or a non-IP addr, is left as it is.
func (t *HandshakeTicket) SetClient(addr net.Addr) error {
	l := t.l
	return l.setClient(addr, clientCount{l.pending, l.opts.MaxHandshakesPerClient, &l.hsRefusedClient, ErrTooManyHandshakesFromClient},
		func() (bool, error) {
			if t.keyed {
				return true, nil
			}
			if t.evicted() {
				return false, ErrEvicted
			}
			return false, nil
		},
		func(key netip.Addr) {
			t.client, t.keyed = key, true
			if t.p != nil {
				t.p.client, t.p.keyed = key, true
			}
		})
}

// Wait waits for the ticket's slot until deadline, the handshake's: at
// once if it was free, a timer made only when the handshake has to wait.
// On success the caller must call done when the handshake has finished,
// failed or not; otherwise the error is context.DeadlineExceeded and the
// place is given up (counted as expired).
func (t HandshakeTicket) Wait(deadline time.Time) (done func(), err error) {
	if t.ch == nil {
		return t.done, nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return t.wait(ctx)
}

// WaitContext is Wait until ctx ends rather than until a deadline: a
// QUIC handshake waits under its connection's context, which carries the
// handshake deadline and ends with the connection.
func (t HandshakeTicket) WaitContext(ctx context.Context) (done func(), err error) {
	return t.wait(ctx)
}

func (t HandshakeTicket) wait(ctx context.Context) (done func(), err error) {
	l := t.l
	if t.ch == nil {
		return t.done, nil
	}
	select {
	case <-t.ch:
		if t.evicted() {
			return nil, ErrEvicted
		}
		// The slot was handed over. While the crypto gate paces (a
		// flood), wait for the network poller to run first, as the
		// gate's own hand-overs do: queued connections whose clients
		// left (most of a flood's) each take their turn and close in a
		// few µs, and handed from one to the next directly they ran
		// hundreds in a row, 8-15 ms in a trace, with no poll between.
		// Otherwise yield, as CryptoGate.Acquire does, so that
		// handshakes do not chain through the scheduler's runnext.
		if !l.crypto.yieldToPoller() {
			runtime.Gosched()
		}
		return t.done, nil
	case <-ctx.Done():
	}
	if !t.giveUp() {
		return nil, ErrEvicted
	}
	l.hsExpired.Add(1)
	return nil, context.Cause(ctx)
}

// Evicted reports whether the limiter closed the ticket's connection to
// make room, its client having kept the handshake waiting (evict.go).
func (t HandshakeTicket) Evicted() bool { return t.evicted() }

func (t HandshakeTicket) evicted() bool { return t.p != nil && t.p.evicted.Load() }

// Cancel gives the ticket's place up without a handshake: the connection
// went elsewhere before its goroutine waited (it is not counted).
func (t HandshakeTicket) Cancel() {
	if t.ch == nil {
		t.done()
		return
	}
	t.giveUp()
}

// done ends the ticket's handshake: its slot goes to the longest waiter
// or is freed, and its client holds one place less. After an eviction,
// which did both, it does nothing.
func (t HandshakeTicket) done() {
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !t.leave() {
		return
	}
	l.handshakeDone()
}

// leave takes the ticket's place off its client's count and off the
// watched list; false when an eviction did so already. l.mu is held.
func (t HandshakeTicket) leave() bool {
	if t.p != nil {
		if t.p.evicted.Load() {
			return false
		}
		t.l.unlinkPlace(t.p)
	}
	t.l.releasePending(t.client, t.keyed)
	return true
}

// releasePending takes a place off client's count; l.mu is held.
func (l *Limiter) releasePending(client netip.Addr, keyed bool) {
	if !keyed {
		return
	}
	if n := l.pending[client] - 1; n > 0 {
		l.pending[client] = n
	} else {
		delete(l.pending, client)
	}
}

// giveUp leaves the queue, or passes on the slot handed over meanwhile;
// false when the ticket's connection was evicted (nothing to give up).
func (t HandshakeTicket) giveUp() bool {
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !t.leave() {
		return false
	}
	for i, w := range l.waiters {
		if w.ch == t.ch {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			l.signalRoom()
			return true
		}
	}
	l.handshakeDone()
	return true
}

// full: every handshake slot is taken and the queue is full; l.mu is held.
func (l *Limiter) full() bool {
	return l.opts.MaxHandshakes > 0 && l.running >= l.opts.MaxHandshakes &&
		(l.opts.HandshakeQueue <= 0 || len(l.waiters) >= l.opts.HandshakeQueue)
}

// WaitForRoom waits while every handshake slot is taken and the queue is
// full, until a new connection's handshake could start or queue, or stop
// is closed; it reports whether there is room. An accept loop calls it
// instead of accepting connections it would only refuse: they stay in
// the kernel, whose listen backlog refuses the rest (the server shrinks
// it meanwhile). A pause is pressure: while it lasts, watched connections
// whose client keeps its handshake waiting for IdleGrace are evicted to
// make room (evict.go). The waits are counted in Stats (AcceptPauses,
// AcceptPaused).
func (l *Limiter) WaitForRoom(stop <-chan struct{}) bool {
	l.mu.Lock()
	if !l.full() {
		l.mu.Unlock()
		return true
	}
	if l.room == nil {
		l.room = make(chan struct{})
	}
	room := l.room
	start := time.Since(l.epoch)
	l.pausing++
	l.pauseStarts += start
	// Idle connections give way, now and at their next check while the
	// limiter stays full (evict.go); an eviction makes room.
	closers := l.evictIdle(time.Now())
	l.armEvict()
	l.mu.Unlock()
	closeEvicted(closers)
	l.pauses.Add(1)
	defer func() {
		l.mu.Lock()
		l.pausing--
		l.pauseStarts -= start
		l.pausedNanos.Add(uint64(time.Since(l.epoch) - start))
		l.mu.Unlock()
	}()
	select {
	case <-room:
		return true
	case <-stop:
		return false
	}
}

// signalRoom wakes the WaitForRoom callers once the limiter is no longer
// full, and stops the eviction timer once nothing waits; l.mu is held.
func (l *Limiter) signalRoom() {
	if l.room != nil && !l.full() {
		close(l.room)
		l.room = nil
	}
	if l.evictArmed && !l.pressure() {
		l.evictTimer.Stop()
		l.evictArmed = false
	}
}

// handshakeDone frees a slot, handing it to the longest waiter if any;
// either way a new connection's handshake can queue or start again. l.mu
// is held.
func (l *Limiter) handshakeDone() {
	defer l.signalRoom()
	if len(l.waiters) > 0 {
		close(l.popWaiter())
		return
	}
	l.running--
}

// popWaiter takes the longest waiter off the queue, its place now
// holding a slot, and returns its channel to close; l.mu is held.
func (l *Limiter) popWaiter() chan struct{} {
	w := l.waiters[0]
	l.waiters[0] = waiter{}
	l.waiters = l.waiters[1:]
	if w.p != nil {
		w.p.queued = false
	}
	return w.ch
}
