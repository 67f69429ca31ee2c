package connlimit

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestSetClientAfterEviction: a trusted balancer's connection, reserved
// without a client, is evicted as silent, and its PROXY header (read by
// its goroutine in the instant after the pass) then names the client.
// SetClient must refuse with ErrEvicted and count nothing: the eviction
// freed the place, and a count taken now would never be given back,
// leaving the client one place short for good.
func TestSetClientAfterEviction(t *testing.T) {
	l := New(Options{MaxHandshakes: 1, HandshakeQueue: -1, MaxHandshakesPerClient: 1})
	tk, err := l.ReserveWatchedHandshake(nil, &fakeWatch{})
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	closers := l.evictSilent(time.Now().Add(SilentGrace))
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
	spoke   bool // the client has sent something
	evicted bool
}

func (w *fakeWatch) Silent() bool { return !w.spoke }
func (w *fakeWatch) Evict()       { w.evicted = true }

// TestEvictSilent: while the limiter is full, watched connections whose
// client has sent nothing for SilentGrace are evicted, oldest first,
// slot holders and queued ones alike, their places (and their client's
// count) freed at once and counted; connections that spoke, young ones
// and unwatched ones stay; nothing is evicted while there is room.
func TestEvictSilent(t *testing.T) {
	client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	type conn struct {
		spoke   bool
		young   bool // reserved less than SilentGrace before the pass
		watched bool
		queued  bool // the reservation queued
		evicted bool // want
	}
	tests := []struct {
		name    string
		slots   int
		queue   int
		conns   []conn
		waitErr []bool // want ErrEvicted from the queued tickets' Wait, in order
	}{
		{"room left: nothing evicted", 3, 1, []conn{{watched: true}, {watched: true}}, nil},
		{"silent slot holders and queued ones evicted", 2, 2,
			[]conn{{watched: true, evicted: true}, {watched: true, spoke: true}, {watched: true, queued: true, evicted: true}, {watched: true, queued: true, spoke: true}},
			[]bool{true, false}},
		{"young and unwatched connections stay", 2, 1,
			[]conn{{watched: false}, {watched: true, evicted: true}, {watched: true, queued: true, young: true}},
			[]bool{false}}, // the evicted one's slot went to it
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxHandshakes: tt.slots, HandshakeQueue: tt.queue, MaxHandshakesPerClient: 10})
			var tickets []HandshakeTicket
			var watches []*fakeWatch
			for i, c := range tt.conns {
				w := &fakeWatch{spoke: c.spoke}
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
				if c.young && tk.p != nil {
					tk.p.since = time.Now().Add(time.Hour)
				}
				tickets, watches = append(tickets, tk), append(watches, w)
			}
			l.mu.Lock()
			closers := l.evictSilent(time.Now().Add(SilentGrace))
			l.mu.Unlock()
			for _, w := range closers {
				w.Evict()
			}
			want := 0
			for i, c := range tt.conns {
				if watches[i].evicted != c.evicted || tickets[i].Evicted() != c.evicted {
					t.Errorf("connection %d: evicted %v (ticket %v), want %v", i, watches[i].evicted, tickets[i].Evicted(), c.evicted)
				}
				if c.evicted {
					want++
				}
			}
			st := l.Stats()
			if st.HandshakesEvicted != uint64(want) {
				t.Errorf("HandshakesEvicted %d, want %d", st.HandshakesEvicted, want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			// Every place comes back exactly once: the evicted ones at
			// the eviction, the others when their tickets end.
			k := 0
			for i, c := range tt.conns {
				switch {
				case c.queued:
					done, err := tickets[i].wait(ctx)
					if got := errors.Is(err, ErrEvicted); got != tt.waitErr[k] {
						t.Errorf("queued connection %d: Wait %v, want ErrEvicted %v", i, err, tt.waitErr[k])
					}
					k++
					if done != nil {
						done()
					}
				case c.evicted:
					tickets[i].done() // what a slot holder's goroutine does after its failed read
				default:
					tickets[i].Cancel()
				}
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.running != 0 || len(l.waiters) != 0 || len(l.pending) != 0 || l.oldest != nil || l.newest != nil {
				t.Errorf("after every ticket ended: %d running, %d waiting, pending %v, list %p..%p; want all empty", l.running, len(l.waiters), l.pending, l.oldest, l.newest)
			}
		})
	}
}
