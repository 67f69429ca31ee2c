package server

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestConnTrackerDrain: a drain waits while an HTTP/1 connection is open
// (whatever its requests do) or an HTTP/2 one is not yet registered by the
// HTTP/2 server, and goes on as soon as neither is left.
func TestConnTrackerDrain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		start  connPhase
		steps  []http.ConnState // reported while the drain waits
		finish http.ConnState   // the report that lets it go on
	}{
		{"HTTP/1 connection closes", phaseHTTP1, []http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateActive, http.StateIdle}, http.StateClosed},
		{"HTTP/1 connection is hijacked", phaseHTTP1, []http.ConnState{http.StateNew, http.StateActive}, http.StateHijacked},
		{"HTTP/2 connection registers, then its first request", phaseH2Pending, []http.ConnState{http.StateNew, http.StateActive, http.StateIdle}, http.StateActive},
		{"fresh HTTP/2 connection closes", phaseH2Pending, []http.ConnState{http.StateNew, http.StateActive, http.StateIdle}, http.StateClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := net.Pipe()
			defer c.Close()
			defer peer.Close()
			tr := newConnTracker()
			tr.grace = time.Hour // a fresh HTTP/2 connection holds the drain
			tr.expect(c)
			tr.mu.Lock()
			tr.phase[c] = tc.start // net.Pipe has no ALPN to set it
			tr.mu.Unlock()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			done := make(chan struct{})
			go func() {
				tr.waitHTTP1(ctx)
				close(done)
			}()
			for _, st := range tc.steps {
				tr.track(c, st)
				select {
				case <-done:
					t.Fatalf("the drain went on after %v", st)
				default:
				}
			}
			tr.track(c, tc.finish)
			select {
			case <-done:
				if ctx.Err() != nil {
					t.Fatalf("the drain went on only at its deadline, not after %v", tc.finish)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the drain still waits after %v", tc.finish)
			}
		})
	}
	t.Run("fresh HTTP/2 connection past its grace", func(t *testing.T) {
		c, peer := net.Pipe()
		defer c.Close()
		defer peer.Close()
		tr := newConnTracker()
		tr.grace = 10 * time.Millisecond
		tr.expect(c)
		tr.mu.Lock()
		tr.phase[c] = phaseH2Pending
		tr.mu.Unlock()
		tr.track(c, http.StateActive) // registered, no request yet
		tr.track(c, http.StateIdle)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		tr.waitHTTP1(ctx)
		if ctx.Err() != nil {
			t.Fatal("a connection that never sent a request held the drain to its deadline")
		}
	})
	t.Run("nothing open", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		newConnTracker().waitHTTP1(ctx)
		if ctx.Err() != nil {
			t.Fatal("a drain with no connection waited for its deadline")
		}
	})
}
