package connlimit

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"
)

// Evicting silent connections.
//
// A connection that sends nothing holds its handshake slot or queue place
// until the handshake deadline (timeouts.handshake): with the defaults,
// twenty addresses of 64 such connections each (MaxHandshakesPerClient)
// fill every slot and queue place, and every accept loop pauses
// (WaitForRoom) for as long as they are kept open, leaving new clients'
// SYNs to the kernel. So while the limiter is full, a watched connection
// (ReserveWatchedHandshake) whose client has sent no byte SilentGrace
// after it was accepted is evicted: closed, its place freed at once,
// counted in Stats.HandshakesEvicted. A real client sends its ClientHello
// (or its PROXY header) right after the ACK that completes its TCP
// handshake, so it arrives with the accept whatever the distance: only a
// client that waits before writing, or whose first segment is lost and
// retransmitted more than SilentGrace after the accept, can be mistaken
// for a silent one, and only while the limiter is full.

// SilentGrace is how long a watched connection may have sent nothing
// before it can be evicted while the limiter is full.
const SilentGrace = time.Second

// evictScan bounds the places one eviction pass asks (each a system
// call, under the limiter's lock); the rest wait for the next pass.
const evictScan = 256

// evictTick is how often a paused accept loop runs an eviction pass.
const evictTick = SilentGrace / 4

// ErrEvicted is HandshakeTicket.Wait's error when the limiter closed the
// connection to make room (SilentGrace).
var ErrEvicted = errors.New("closed to make room: the client sent nothing while every handshake place was taken")

// Watcher is how the limiter asks about a connection holding a watched
// handshake place.
type Watcher interface {
	// Silent reports whether the client has sent nothing at all on the
	// connection (not a byte received, whether read or not); false when
	// it cannot tell. Once false it must stay false.
	Silent() bool
	// Evict closes the connection. It is called without the limiter's
	// lock held, so it may free the connection's place (Conn.Close).
	Evict()
}

// place is a watched connection's handshake place, in the limiter's list
// of them (oldest first). Its fields but evicted are guarded by the
// limiter's mutex.
type place struct {
	since  time.Time
	w      Watcher
	client netip.Addr // what the place counts against (pending), when keyed
	keyed  bool
	queued bool // waits in the queue; otherwise holds a slot
	linked bool // in the list
	// evicted is set under the mutex before the ticket's channel is
	// closed, and read by the ticket's goroutine after it.
	evicted    atomic.Bool
	prev, next *place
}

// linkPlace appends p to the watched list; l.mu is held.
func (l *Limiter) linkPlace(p *place) {
	p.prev, p.linked = l.newest, true
	if l.newest != nil {
		l.newest.next = p
	} else {
		l.oldest = p
	}
	l.newest = p
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

// evictSilent evicts, while the limiter is full, the watched connections
// that have sent nothing SilentGrace after their reservation, oldest
// first, asking at most evictScan of them; a place whose client has sent
// something leaves the list for good. It returns the connections to close
// once l.mu is released. l.mu is held.
func (l *Limiter) evictSilent(now time.Time) []Watcher {
	if !l.full() {
		return nil
	}
	var victims []*place
	for p, n := l.oldest, 0; p != nil && n < evictScan && now.Sub(p.since) >= SilentGrace; n++ {
		next := p.next
		l.unlinkPlace(p)
		if p.w.Silent() {
			p.evicted.Store(true)
			l.releasePending(p.client, p.keyed)
			victims = append(victims, p)
		}
		p = next
	}
	if len(victims) == 0 {
		return nil
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
	closers := make([]Watcher, 0, len(victims))
	for _, p := range victims {
		if !p.queued {
			l.handshakeDone()
		}
		closers = append(closers, p.w)
	}
	l.hsEvicted.Add(uint64(len(victims)))
	l.signalRoom()
	return closers
}

// EvictSilent runs one eviction pass now (evictSilent) and closes what it
// evicted; WaitForRoom runs them while it waits. It returns how many
// connections it evicted.
func (l *Limiter) EvictSilent() int {
	l.mu.Lock()
	closers := l.evictSilent(time.Now())
	l.mu.Unlock()
	for _, w := range closers {
		w.Evict()
	}
	return len(closers)
}
