package connlimit

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"
)

// Evicting idle handshakes.
//
// A connection whose client sends nothing, or the start of a ClientHello
// (or of a PROXY header) and then nothing, holds its handshake slot or
// queue place until the handshake deadline (timeouts.handshake): four
// such connections hold four slots, and a real client queued behind them
// waits the whole deadline; twenty addresses of 64 each
// (MaxHandshakesPerClient) fill every slot and queue place and pause
// every accept loop (WaitForRoom). So under pressure, whenever a
// handshake waits in the queue or the limiter is full, a watched
// connection (ReserveWatchedHandshake) whose client keeps its handshake
// waiting for IdleGrace is evicted: closed, its place freed at once (a
// slot goes to the longest live waiter), counted in Stats. Two kinds, the
// metric's two reasons:
//
//   - silent: the client has sent no byte IdleGrace after the accept,
//     slot holder or queued (Idleness.Silent);
//   - stalled: the handshake is blocked reading the client, before
//     pqedge wrote anything to it, and nothing arrived for IdleGrace
//     (Idleness.ReadingSince); or, queued, its client sent the start of
//     a ClientHello record and nothing for IdleGrace since
//     (Idleness.PartialSince). Without the second, a queued connection
//     that sent one byte was judged only once it had a slot, so a client
//     queued behind N of them waited N/MaxHandshakes graces more.
//
// What is never taken for idle: a queued connection whose whole
// ClientHello record waits unread in the socket, and a handshake waiting for a crypto slot
// or computing (neither reads); a handshake that sent its flight and
// waits for the client's answer (Idleness.Answered), which the handshake
// deadline bounds. A real client sends its ClientHello right after the
// ACK that completes its TCP handshake, so only a lost segment
// retransmitted more than IdleGrace later (TCP's RTO is 200 ms at least
// and grows on long paths: RFC 6298 section 2) makes it look idle, and
// only under pressure.
//
// Cost: nothing while a handshake gets a slot at once. Under pressure, a
// pass runs when a reservation queues, when an accept loop pauses, and
// from one limiter-owned timer (time.AfterFunc) armed for the oldest
// watched place's next check while anything waits; a pass asks only the
// places whose check is due (each a system call, under the limiter's
// lock), at most evictScan, and each place at most once per IdleGrace.

// DefaultIdleGrace is IdleGrace unless set: ten times TCP's minimum
// retransmission timeout (200 ms), so that a first segment lost once or
// twice on a long path still arrives within it, and short enough that a
// queued client behind idle slot holders waits seconds, not the
// handshake timeout.
const DefaultIdleGrace = 2 * time.Second

// evictScan bounds the places one eviction pass asks (each a system
// call, under the limiter's lock); the rest wait for the next pass.
const evictScan = 256

// ErrEvicted is HandshakeTicket.Wait's error when the limiter closed the
// connection to make room (evict.go).
var ErrEvicted = errors.New("closed to make room: the client kept its handshake waiting while others queued")

// Watcher is how the limiter asks about a connection holding a watched
// handshake place. The limiter calls it under its lock, from the
// goroutine of a reservation, of a paused accept loop or of its timer.
type Watcher interface {
	// Idle reports whether and how the client keeps the handshake
	// waiting now.
	Idle() Idleness
	// Evict closes the connection. It is called without the limiter's
	// lock held, so it may free the connection's place (Conn.Close).
	Evict()
}

// Idleness is what a Watcher knows of its client. A Watcher that cannot
// tell reports the zero value, which is never evicted.
type Idleness struct {
	// Silent: the client has sent no byte at all (none received by the
	// kernel, read or not). Once false it stays false.
	Silent bool
	// ReadingSince is when the handshake began the read it is blocked
	// in, waiting for the client's next bytes (ClientHello or PROXY
	// header); zero when it is not blocked on the client.
	ReadingSince time.Time
	// Answered: pqedge has written to the client (its flight, an
	// alert). From then on the client's silence is the handshake
	// deadline's business, and the limiter stops watching.
	Answered bool
	// PartialSince is when the last byte arrived of a ClientHello record
	// that has not arrived whole and waits unread in the socket, nothing
	// having been read from it yet; zero otherwise. The limiter heeds it
	// for queued places only, whose handshakes do not read: a slot
	// holder's stall shows in ReadingSince.
	PartialSince time.Time
}

// Eviction reasons, the metric's (pqedge_connections_refused_total).
const (
	reasonSilent  = 1
	reasonStalled = 2
)

// place is a watched connection's handshake place, in the limiter's list
// of them (by next check). Its fields but evicted are guarded by the
// limiter's mutex.
type place struct {
	since  time.Time // reserved (the accept)
	check  time.Time // due for a check IdleGrace after this
	w      Watcher
	client netip.Addr // what the place counts against (pending), when keyed
	keyed  bool
	queued bool // waits in the queue; otherwise holds a slot
	linked bool // in the list
	reason int  // why it was evicted
	// evicted is set under the mutex before the ticket's channel is
	// closed, and read by the ticket's goroutine after it.
	evicted    atomic.Bool
	prev, next *place
}

// linkPlace puts p on the watched list in the order of its check, which
// is seldom far from the newest's: a new place's (its accept, now) is the
// newest, so it is appended at once; l.mu is held.
func (l *Limiter) linkPlace(p *place) {
	after := l.newest
	for after != nil && after.check.After(p.check) {
		after = after.prev
	}
	if after == nil {
		p.prev, p.next, p.linked = nil, l.oldest, true
		if l.oldest != nil {
			l.oldest.prev = p
		} else {
			l.newest = p
		}
		l.oldest = p
		return
	}
	p.prev, p.next, p.linked = after, after.next, true
	if after.next != nil {
		after.next.prev = p
	} else {
		l.newest = p
	}
	after.next = p
}

// unlinkPlace takes p off the watched list, if it is on it; l.mu is held.
func (l *Limiter) unlinkPlace(p *place) {
	if !p.linked {
		return
	}
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		l.oldest = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		l.newest = p.prev
	}
	p.prev, p.next, p.linked = nil, nil, false
}

// pressure: a handshake waits in the queue, or every slot is taken and
// the queue is full (an accept loop pauses); l.mu is held.
func (l *Limiter) pressure() bool { return len(l.waiters) > 0 || l.full() }

// evictIdle runs an eviction pass under pressure: it asks the watched
// places whose check is due, oldest first, at most evictScan, and evicts
// those whose client is silent or stalled (evict.go's rules); the others
// are checked again IdleGrace after their reading began, or after now,
// and a place whose handshake answered leaves the list for good. It
// returns the evicted places, whose connections closeEvicted closes once
// l.mu is released. l.mu is held.
func (l *Limiter) evictIdle(now time.Time) []*place {
	grace := l.opts.IdleGrace
	if grace <= 0 || !l.pressure() {
		return nil
	}
	var victims, again []*place
	for p, n := l.oldest, 0; p != nil && n < evictScan && now.Sub(p.check) >= grace; n++ {
		next := p.next
		l.unlinkPlace(p)
		switch idle := p.w.Idle(); {
		case idle.Answered:
		case idle.Silent: // since the accept, IdleGrace or more ago
			p.reason = reasonSilent
			victims = append(victims, p)
		case !idle.ReadingSince.IsZero() && now.Sub(idle.ReadingSince) >= grace,
			p.queued && !idle.PartialSince.IsZero() && now.Sub(idle.PartialSince) >= grace:
			p.reason = reasonStalled
			victims = append(victims, p)
		default:
			p.check = now
			if !idle.ReadingSince.IsZero() {
				p.check = idle.ReadingSince
			} else if p.queued && !idle.PartialSince.IsZero() {
				p.check = idle.PartialSince
			}
			again = append(again, p)
		}
		p = next
	}
	// After the scan, so that it does not meet them again.
	for _, p := range again {
		l.linkPlace(p)
	}
	if len(victims) == 0 {
		return nil
	}
	for _, p := range victims {
		p.evicted.Store(true)
		l.releasePending(p.client, p.keyed)
	}
	// Queued victims leave the queue first, so that the slots of the
	// others go to live waiters only.
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		if w.p != nil && w.p.evicted.Load() {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	clear(l.waiters[len(kept):])
	l.waiters = kept
	for _, p := range victims {
		if !p.queued {
			l.handshakeDone()
		}
		if p.reason == reasonSilent {
			l.hsSilent.Add(1)
		} else {
			l.hsStalled.Add(1)
		}
	}
	l.signalRoom()
	return victims
}

// closeEvicted closes the connections of an eviction pass; l.mu is not
// held.
func closeEvicted(victims []*place) {
	for _, p := range victims {
		p.w.Evict()
	}
}

// armEvict keeps the eviction timer pending for the oldest watched
// place's next check while there is pressure, and stops it otherwise; a
// timer due earlier is kept (its pass re-arms it). l.mu is held.
func (l *Limiter) armEvict() {
	if l.opts.IdleGrace <= 0 || l.oldest == nil || !l.pressure() {
		if l.evictArmed {
			l.evictTimer.Stop()
			l.evictArmed = false
		}
		return
	}
	at := l.oldest.check.Add(l.opts.IdleGrace)
	if l.evictArmed && !l.evictAt.After(at) {
		return
	}
	l.evictAt, l.evictArmed = at, true
	if l.evictTimer == nil {
		l.evictTimer = time.AfterFunc(time.Until(at), l.evictDue)
		return
	}
	l.evictTimer.Reset(time.Until(at))
}

// evictDue is the eviction timer's pass.
func (l *Limiter) evictDue() {
	l.mu.Lock()
	l.evictArmed = false
	victims := l.evictIdle(time.Now())
	l.armEvict()
	l.mu.Unlock()
	closeEvicted(victims)
}
