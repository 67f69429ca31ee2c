package connlimit

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSetClientAfterEviction: a trusted balancer's connection, reserved
// without a client, is evicted as silent (the limiter is full: pressure), and its PROXY
// header (read by its goroutine in the instant after the pass) then names
// the client.
// SetClient must refuse with ErrEvicted and count nothing: the eviction
// freed the place, and a count taken now would never be given back,
// leaving the client one place short for good.
func TestSetClientAfterEviction(t *testing.T) {
	l := New(Options{MaxHandshakes: 1, HandshakeQueue: -1, MaxHandshakesPerClient: 1})
	tk, err := l.ReserveWatchedHandshake(nil, &fakeWatch{idle: silent})
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	closers := l.evictIdle(time.Now().Add(DefaultIdleGrace))
	l.mu.Unlock()
	if len(closers) != 1 || !tk.Evicted() {
		t.Fatalf("evicted %d connections (ticket %v), want the silent one", len(closers), tk.Evicted())
	}
	client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	if err := tk.SetClient(client); !errors.Is(err, ErrEvicted) {
		t.Fatalf("SetClient after the eviction: %v, want ErrEvicted", err)
	}
	tk.Cancel() // what handleConn does on a SetClient error
	if st := l.Stats(); st.HandshakesRefusedPerClient != 0 || st.Handshakes != 0 {
		t.Errorf("stats %+v, want no per-client refusal and no slot held", st)
	}
	// The client's one place is free: its next connection gets it.
	next, err := l.ReserveHandshake(client)
	if err != nil {
		t.Fatalf("the client's next connection: %v, want a slot (a place was leaked)", err)
	}
	next.Cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) != 0 || l.running != 0 || l.oldest != nil {
		t.Errorf("after every ticket ended: pending %v, %d running, list %p; want all empty", l.pending, l.running, l.oldest)
	}
}

// fakeWatch is a connection as the limiter's eviction sees it.
type fakeWatch struct {
	mu      sync.Mutex // guards idle: the limiter asks from its timer's goroutine
	idle    Idleness
	evicted atomic.Bool
}

func (w *fakeWatch) Idle() Idleness {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.idle
}

func (w *fakeWatch) Evict() { w.evicted.Store(true) }

// The states of a watched connection, as its Watcher reports them.
var (
	silent = Idleness{Silent: true, ReadingSince: time.Now()} // a slot holder reads; a queued one does not, same verdict
	// stalledFor: the handshake has been blocked reading for d, after
	// the client's first bytes.
	stalledFor = func(d time.Duration) Idleness { return Idleness{ReadingSince: time.Now().Add(-d)} }
	unread     = Idleness{}                                                         // spoke; not reading: its ClientHello waits unread, or a crypto slot
	answered   = Idleness{Answered: true, ReadingSince: time.Now().Add(-time.Hour)} // waits for the client's Finished
	// partialFor: the start of a ClientHello record waits unread, its
	// last byte d ago.
	partialFor = func(d time.Duration) Idleness { return Idleness{PartialSince: time.Now().Add(-d)} }
)

// granted reports whether a queued ticket was handed a slot, without
// waiting.
func granted(tk HandshakeTicket) bool {
	select {
	case <-tk.ch:
		return !tk.Evicted()
	default:
		return false
	}
}

// backdate makes a ticket's place reserved, and due for its check, d ago.
func backdate(l *Limiter, tk HandshakeTicket, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tk.p.since = tk.p.since.Add(-d)
	tk.p.check = tk.p.since
	l.unlinkPlace(tk.p)
	l.linkPlace(tk.p)
}

// TestEvictIdle: under pressure (a handshake queued), the watched
// connections whose client kept the handshake waiting for IdleGrace are
// evicted, slot holders and queued ones alike, their places (and their
// client's count) freed at once and counted by reason; connections that
// are young, unwatched, waiting unread in the queue, waiting for a crypto
// slot or answered stay; a queued live client gets an evicted holder's
// slot. Without pressure nothing is evicted.
func TestEvictIdle(t *testing.T) {
	const grace = time.Minute
	client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	type conn struct {
		idle    Idleness
		age     time.Duration // since its reservation, at the pass
		watched bool
		queued  bool // the reservation queued
		evicted bool // want
	}
	tests := []struct {
		name            string
		slots, queue    int
		conns           []conn
		silent, stalled uint64 // want counted
		granted         []bool // want the queued tickets' Wait to get a slot, in order
	}{
		{name: "no pressure: nothing evicted", slots: 3, queue: 1,
			conns: []conn{{idle: silent, age: time.Hour, watched: true}, {idle: stalledFor(time.Hour), age: time.Hour, watched: true}}},
		{name: "silent slot holders give way to a queued client", slots: 2, queue: 4,
			conns:  []conn{{idle: silent, age: 2 * grace, watched: true, evicted: true}, {idle: silent, age: 2 * grace, watched: true, evicted: true}, {idle: unread, watched: true, queued: true}},
			silent: 2, granted: []bool{true}},
		{name: "stalled slot holders give way, queued stallers do not read yet", slots: 2, queue: 4,
			conns: []conn{{idle: stalledFor(2 * grace), age: 2 * grace, watched: true, evicted: true}, {idle: stalledFor(grace), age: 2 * grace, watched: true, evicted: true},
				{idle: unread, age: 2 * grace, watched: true, queued: true}, {idle: unread, watched: true, queued: true}},
			stalled: 2, granted: []bool{true, true}},
		{name: "silent queued ones leave the queue", slots: 1, queue: 3,
			conns:  []conn{{idle: unread, age: 2 * grace, watched: true}, {idle: silent, age: 2 * grace, watched: true, queued: true, evicted: true}, {idle: unread, watched: true, queued: true}},
			silent: 1, granted: []bool{false, false}},
		{name: "live slow slot holders keep a queued ClientHello waiting, nobody evicted", slots: 3, queue: 4,
			conns: []conn{{idle: answered, age: time.Hour, watched: true}, {idle: unread, age: time.Hour, watched: true}, // computing or waiting for a crypto slot
				{idle: stalledFor(grace / 2), age: time.Hour, watched: true}, // a lost segment on its way again
				{idle: unread, age: time.Hour, watched: true, queued: true}},
			granted: []bool{false}},
		{name: "queued partial ClientHellos leave the queue, a young one stays", slots: 1, queue: 4,
			conns: []conn{{idle: answered, age: 2 * grace, watched: true},
				{idle: partialFor(2 * grace), age: 2 * grace, watched: true, queued: true, evicted: true}, {idle: partialFor(grace), age: 2 * grace, watched: true, queued: true, evicted: true},
				{idle: partialFor(grace / 2), age: 2 * grace, watched: true, queued: true}, {idle: unread, age: 2 * grace, watched: true, queued: true}},
			stalled: 2, granted: []bool{false, false}},
		{name: "a slot holder is not judged by what waits unread", slots: 1, queue: 1,
			conns:   []conn{{idle: partialFor(time.Hour), age: time.Hour, watched: true}, {idle: unread, watched: true, queued: true}},
			granted: []bool{false}},
		{name: "young and unwatched connections stay", slots: 2, queue: 2,
			conns:  []conn{{watched: false}, {idle: silent, age: 2 * grace, watched: true, evicted: true}, {idle: silent, age: grace / 2, watched: true, queued: true}},
			silent: 1, granted: []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxHandshakes: tt.slots, HandshakeQueue: tt.queue, MaxHandshakesPerClient: 10, IdleGrace: grace})
			var tickets []HandshakeTicket
			var watches []*fakeWatch
			for i, c := range tt.conns {
				w := &fakeWatch{idle: c.idle}
				var tk HandshakeTicket
				var err error
				if c.watched {
					tk, err = l.ReserveWatchedHandshake(client, w)
				} else {
					tk, err = l.ReserveHandshake(client)
				}
				if err != nil {
					t.Fatalf("reservation %d: %v", i, err)
				}
				if (tk.ch != nil) != c.queued {
					t.Fatalf("reservation %d queued %v, want %v", i, tk.ch != nil, c.queued)
				}
				tickets, watches = append(tickets, tk), append(watches, w)
			}
			// Aged after the reservations, whose own passes (the
			// queued ones') found every place young.
			for i, c := range tt.conns {
				if c.watched {
					backdate(l, tickets[i], c.age)
				}
			}
			l.mu.Lock()
			victims := l.evictIdle(time.Now())
			l.mu.Unlock()
			closeEvicted(victims)
			for i, c := range tt.conns {
				if watches[i].evicted.Load() != c.evicted || tickets[i].Evicted() != c.evicted {
					t.Errorf("connection %d: evicted %v (ticket %v), want %v", i, watches[i].evicted.Load(), tickets[i].Evicted(), c.evicted)
				}
			}
			if st := l.Stats(); st.HandshakesSilent != tt.silent || st.HandshakesStalled != tt.stalled {
				t.Errorf("counted %d silent, %d stalled; want %d, %d", st.HandshakesSilent, st.HandshakesStalled, tt.silent, tt.stalled)
			}
			// Every place comes back exactly once: the evicted ones at
			// the eviction, the others when their tickets end.
			k := 0
			got := map[int]bool{}
			for i, c := range tt.conns {
				if c.queued && !c.evicted {
					if got[i] = granted(tickets[i]); got[i] != tt.granted[k] {
						t.Errorf("queued connection %d: got a slot %v, want %v", i, got[i], tt.granted[k])
					}
					k++
				}
			}
			var dones []func()
			for i, c := range tt.conns {
				switch {
				case c.queued && !c.evicted && got[i]:
					done, err := tickets[i].Wait(time.Now().Add(time.Hour)) // returns at once
					if err != nil {
						t.Fatalf("queued connection %d: Wait %v after its slot was handed over", i, err)
					}
					dones = append(dones, done)
				case c.queued && !c.evicted:
					tickets[i].Cancel()
				case c.queued:
					if _, err := tickets[i].Wait(time.Now().Add(time.Hour)); !errors.Is(err, ErrEvicted) {
						t.Errorf("evicted queued connection %d: Wait %v, want ErrEvicted", i, err)
					}
				case c.evicted:
					tickets[i].done() // what a slot holder's goroutine does after its failed read
				default:
					tickets[i].Cancel()
				}
			}
			for _, done := range dones {
				done()
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.running != 0 || len(l.waiters) != 0 || len(l.pending) != 0 || l.oldest != nil || l.newest != nil || l.evictArmed {
				t.Errorf("after every ticket ended: %d running, %d waiting, pending %v, list %p..%p, timer armed %v; want all empty",
					l.running, len(l.waiters), l.pending, l.oldest, l.newest, l.evictArmed)
			}
		})
	}
}

// TestQueuedReservationEvicts: the trigger is a reservation that queues,
// not a full limiter. Silent slot holders older than the grace give way
// to it at once, with room left in the queue: it gets a slot without
// waiting, and no accept loop ever paused.
func TestQueuedReservationEvicts(t *testing.T) {
	for _, tt := range []struct {
		name  string
		idle  Idleness
		grace time.Duration
		want  bool // the holders are evicted
	}{
		{"silent holders", silent, time.Second, true},
		{"stalled holders", stalledFor(time.Hour), time.Second, true},
		{"eviction off", silent, -1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxHandshakes: 2, HandshakeQueue: 4, IdleGrace: tt.grace})
			var holders []*fakeWatch
			for range 2 {
				w := &fakeWatch{idle: tt.idle}
				tk, err := l.ReserveWatchedHandshake(nil, w)
				if err != nil {
					t.Fatal(err)
				}
				backdate(l, tk, time.Hour)
				holders = append(holders, w)
			}
			live, err := l.ReserveWatchedHandshake(nil, &fakeWatch{idle: unread})
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range holders {
				if w.evicted.Load() != tt.want {
					t.Errorf("holder %d evicted %v, want %v", i, w.evicted.Load(), tt.want)
				}
			}
			if got := granted(live); got != tt.want {
				t.Fatalf("the queued client got a slot %v, want %v", got, tt.want)
			}
			live.Cancel()
			if st := l.Stats(); st.AcceptPauses != 0 || st.HandshakesQueued != 1 {
				t.Errorf("%d pauses, %d queued; want 0 and 1", st.AcceptPauses, st.HandshakesQueued)
			}
		})
	}
}

// TestEvictTimer: a queued client behind a slot holder that turns silent
// only later than its reservation's pass gets the slot from the
// limiter's timer, without anything else happening; the timer is armed
// only while something waits, and stops when the waiter leaves.
func TestEvictTimer(t *testing.T) {
	t.Run("evicts when due", func(t *testing.T) {
		l := New(Options{MaxHandshakes: 1, HandshakeQueue: 1, IdleGrace: 20 * time.Millisecond})
		holder := &fakeWatch{idle: silent}
		if _, err := l.ReserveWatchedHandshake(nil, holder); err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		armed := l.evictArmed || l.evictTimer != nil
		l.mu.Unlock()
		if armed {
			t.Fatal("a reservation that got a slot at once made a timer")
		}
		live, err := l.ReserveWatchedHandshake(nil, &fakeWatch{idle: unread})
		if err != nil {
			t.Fatal(err)
		}
		done, err := live.Wait(time.Now().Add(10 * time.Second))
		if err != nil {
			t.Fatalf("the queued client: %v, want the silent holder's slot", err)
		}
		// The slot is handed over under the lock, the connection closed
		// right after it.
		waitFor(t, "the silent holder closed", holder.evicted.Load)
		if n := l.Stats().HandshakesSilent; n != 1 {
			t.Errorf("%d counted silent, want 1", n)
		}
		l.mu.Lock()
		armed = l.evictArmed
		l.mu.Unlock()
		if armed {
			t.Error("the timer is still armed with nothing waiting")
		}
		done()
	})
	t.Run("a reload's shorter grace applies to those waiting", func(t *testing.T) {
		opts := Options{MaxHandshakes: 1, HandshakeQueue: 1, IdleGrace: time.Hour}
		l := New(opts)
		holder := &fakeWatch{idle: silent}
		if _, err := l.ReserveWatchedHandshake(nil, holder); err != nil {
			t.Fatal(err)
		}
		live, err := l.ReserveWatchedHandshake(nil, &fakeWatch{idle: unread})
		if err != nil {
			t.Fatal(err)
		}
		opts.IdleGrace = 20 * time.Millisecond
		l.SetOptions(opts)
		done, err := live.Wait(time.Now().Add(10 * time.Second))
		if err != nil {
			t.Fatalf("the queued client after the reload: %v, want the silent holder's slot", err)
		}
		waitFor(t, "the silent holder closed", holder.evicted.Load)
		done()
	})
	t.Run("stops when nobody waits", func(t *testing.T) {
		l := New(Options{MaxHandshakes: 1, HandshakeQueue: 1, IdleGrace: time.Hour})
		holder, err := l.ReserveWatchedHandshake(nil, &fakeWatch{idle: silent})
		if err != nil {
			t.Fatal(err)
		}
		waiter, err := l.ReserveWatchedHandshake(nil, &fakeWatch{idle: unread})
		if err != nil {
			t.Fatal(err)
		}
		armed := func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.evictArmed
		}
		if !armed() {
			t.Fatal("a handshake waits and the timer is not armed")
		}
		waiter.Cancel()
		if armed() {
			t.Error("the waiter left and the timer is still armed")
		}
		holder.Cancel()
	})
}
