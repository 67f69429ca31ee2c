package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// quicIdle closes an HTTP/3 connection that has had no request in flight
// for timeouts.idle, as the HTTP/1.1 and HTTP/2 servers close a keep-alive
// connection idle between requests (QUIC PINGs do not reset it, as HTTP/2
// PINGs do not). The transport's own idle timeout (quic.Config
// MaxIdleTimeout, RFC 9000 section 10.1) still ends a connection that sends
// nothing at all.
//
// It replaces http3.Server's IdleTimeout, whose timer quic-go v0.65 stops
// only when the server closes the connection (http3/server_conn.go,
// RawServerConn.CloseWithError): a connection its client closed stayed
// reachable from that timer, with its quic-go and crypto/tls state (~32 KB
// after one handshake), until the timer fired. With the default 2 minutes
// that held every recent connection: 96 MB after 3,000 handshakes, and the
// garbage collector's work on it made an HTTP/3 handshake cost 1.6x plain
// quic-go's (docs/BENCHMARKS.md, "Over QUIC"). This timer is stopped when
// the connection ends, whoever ends it, and lets go of the connection
// then. Stopping alone is not enough: the runtime leaves a stopped
// time.AfterFunc timer, with its function and what that reaches, in the
// timer heap of the P that started it until the timer reaches the heap's
// head or tail, at the latest when it would have fired (golang/go#75935,
// unfixed in Go 1.27.4). One between other timers stays there as long as
// they do: in 5 of 340 runs of TestQUICClosedConnectionIsReleased one
// closed connection stayed reachable from its stopped clock beyond 30 s,
// for up to timeouts.idle. What a stopped clock holds now is the quicIdle
// itself, 48 bytes.
//
// Its methods are safe for concurrent use.
type quicIdle struct {
	after time.Duration

	mu sync.Mutex // guards the fields below
	// conn is the connection until it ends (end), nil after: the
	// timer's function reaches it only through here.
	conn     idleConn
	inFlight int // requests whose handler has not returned
	timer    *time.Timer
}

// idleConn is what quicIdle uses of a QUIC connection.
type idleConn interface {
	// Context is done when the connection ended, whoever ended it.
	Context() context.Context
	CloseWithError(quic.ApplicationErrorCode, string) error
}

var _ idleConn = (*quic.Conn)(nil)

// watchQUICIdle starts conn's idle clock (after > 0) at its hand-off to the
// HTTP/3 server and stops it when conn ends. It returns nil, and watches
// nothing, when after is not positive or conn has already ended (its
// client closed it during the hand-off).
func watchQUICIdle(conn idleConn, after time.Duration) *quicIdle {
	if after <= 0 || conn.Context().Err() != nil {
		return nil
	}
	i := &quicIdle{conn: conn, after: after}
	i.timer = time.AfterFunc(after, i.expire)
	context.AfterFunc(conn.Context(), i.end)
	return i
}

// begin counts a request in flight: the clock stops.
func (i *quicIdle) begin() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.inFlight++
	if i.inFlight == 1 && i.conn != nil {
		i.timer.Stop()
	}
}

// done counts a request answered: the clock restarts with the last one.
func (i *quicIdle) done() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.inFlight--
	if i.inFlight == 0 && i.conn != nil {
		i.timer.Reset(i.after)
	}
}

// expire closes the connection, unless a request began since the timer
// fired or the connection ended meanwhile.
func (i *quicIdle) expire() {
	i.mu.Lock()
	conn := i.conn
	if i.inFlight > 0 {
		conn = nil
	}
	i.mu.Unlock()
	if conn != nil {
		conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "idle timeout")
	}
}

// end stops the clock for good and lets go of the connection, which
// ended: the stopped timer may stay in the runtime's timer heap until its
// deadline (see quicIdle), holding this quicIdle but nothing beyond it.
func (i *quicIdle) end() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.conn = nil
	i.timer.Stop()
}

// quicIdleHandler counts each HTTP/3 request in its connection's quicIdle,
// and one the client cancelled in its h3Budget. It lifts the stream's
// header deadline (h3Conn.request): the body's deadlines are the proxy's.
type quicIdleHandler struct{ h http.Handler }

func (q quicIdleHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	qc := quicConnFrom(r.Context())
	if qc != nil && qc.idle != nil {
		qc.idle.begin()
		defer qc.idle.done()
	}
	q.h.ServeHTTP(w, r)
	if qc != nil {
		qc.budget.requestEnded(r.Context())
	}
}
