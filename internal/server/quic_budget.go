package server

import (
	"context"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Reasons of pqedge_http3_abuse_total.
const (
	// h3AbuseCancelled: requests the client cancelled (STOP_SENDING on
	// the request stream, RFC 9114 Section 4.1.1) while pqedge was still
	// answering them: HTTP/3's rapid reset. Each such request costs a
	// handler and, if it got that far, an upstream request; its sender
	// pays one HEADERS frame and reads nothing.
	h3AbuseCancelled = "cancelled_requests"
	// h3AbuseRefused: requests pqedge answered itself with an error,
	// without an upstream (refused method or path, 421, no route), as
	// h2guard's refused_requests, and request streams reset as
	// malformed (checkH3RequestFields).
	h3AbuseRefused = "refused_requests"
)

// h3Budget is one HTTP/3 connection's allowance of cancelled and refused
// requests, and of streams that never became one (quic_serve.go): more
// than max of any one reason within one window closes the
// connection with H3_EXCESSIVE_LOAD (RFC 9114 Section 8.1), and the
// reason is counted once. quic-go's server gives each request stream
// back to the client as soon as it completes, so a client that cancels
// every request it sends is bounded only by the speed of the handlers:
// ~5,600 requests a second on one connection, half of them upstream,
// without this budget. The limits are HTTP/2's (limits.h2_resets per
// limits.h2_reset_window). Safe for concurrent use; a nil budget counts
// nothing.
type h3Budget struct {
	max     int
	window  time.Duration
	conn    idleConn
	onAbuse func(reason string)

	mu     sync.Mutex     // guards the fields below
	start  time.Time      // of the current window
	counts map[string]int // by reason, in the current window
	closed bool
}

// newH3Budget watches conn; max <= 0 turns the budget off (nil).
func newH3Budget(conn idleConn, max int, window time.Duration, onAbuse func(string)) *h3Budget {
	if max <= 0 || window <= 0 {
		return nil
	}
	return &h3Budget{max: max, window: window, conn: conn, onAbuse: onAbuse}
}

// count adds one request of reason to the window's and closes the
// connection once a count exceeds the budget.
func (b *h3Budget) count(reason string, now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	if now.Sub(b.start) > b.window || b.counts == nil {
		b.start, b.counts = now, map[string]int{}
	}
	b.counts[reason]++
	over := b.counts[reason] > b.max
	b.closed = over
	b.mu.Unlock()
	if over {
		if b.onAbuse != nil {
			b.onAbuse(reason)
		}
		b.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), reason)
	}
}

// requestEnded counts a request whose context ended while its handler ran
// and its connection lives on: quic-go ends it when the client stops the
// response stream (STOP_SENDING), and for nothing else while the handler
// runs.
func (b *h3Budget) requestEnded(ctx context.Context) {
	if b == nil || ctx.Err() == nil || b.conn.Context().Err() != nil {
		return
	}
	b.count(h3AbuseCancelled, time.Now())
}
