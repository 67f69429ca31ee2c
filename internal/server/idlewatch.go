package server

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/internal/connlimit"
)

// socketWatch is what the limiter asks of an accepted connection that
// holds a handshake place (connlimit.Watcher): whether its client has
// sent anything (clientSilent), whether the handshake is blocked reading
// it and since when, whether it has been answered; and to close it.
// Reading costs a clock read and an atomic store per read of a handshake
// (edgeConn.Read), the system call only the limiter's check, under
// pressure.
type socketWatch struct {
	conn net.Conn        // the limiter's wrapper: closing it frees the connection's place
	rc   syscall.RawConn // the socket; nil when there is none
	// accepted is when the watch began; readingSince is when the
	// handshake began the read from the client it is blocked in, as one
	// more than nanoseconds after accepted (so that the wall clock's
	// steps do not count, as Unix nanoseconds would), 0 when it is not
	// reading: written by the connection's goroutine, read by the
	// limiter's.
	accepted     time.Time
	readingSince atomic.Int64
	answered     atomic.Bool // the handshake wrote to the client
	// read: something (the handshake, the PROXY reader) may have read
	// from the socket, so its waiting bytes are no longer the start of
	// the client's stream and are not peeked at (clientSilent).
	read atomic.Bool
}

// newSocketWatch watches lc, accepted on raw.
func newSocketWatch(lc, raw net.Conn) *socketWatch {
	return &socketWatch{conn: lc, rc: socketOf(raw), accepted: time.Now()}
}

// reading marks the start of a read from the client, readDone its end.
func (w *socketWatch) reading() {
	w.read.Store(true)
	w.readingSince.Store(int64(time.Since(w.accepted)) + 1)
}
func (w *socketWatch) readDone() { w.readingSince.Store(0) }

func (w *socketWatch) Idle() connlimit.Idleness {
	if w.answered.Load() {
		return connlimit.Idleness{Answered: true}
	}
	var idle connlimit.Idleness
	if ns := w.readingSince.Load(); ns != 0 {
		idle.ReadingSince = w.accepted.Add(time.Duration(ns - 1))
	}
	if w.rc == nil {
		return idle
	}
	silent, partialFor := clientSilent(w.rc, !w.read.Load())
	idle.Silent = silent
	if partialFor > 0 {
		idle.PartialSince = time.Now().Add(-partialFor)
	}
	return idle
}

func (w *socketWatch) Evict() { w.conn.Close() }
