package connlimit

import (
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
