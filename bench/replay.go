package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// The replay flood (Options.Replay) is what an attacker's handshake flood
// costs a server: each attempt connects, sends one of a pool of
// ClientHellos made before the run, reads the server's first flight up to
// its Finished (by then the server has made its key share, done the key
// exchange and signed) and closes. The client does no cryptography at
// all, so one client core offers several times what one server core can
// answer, which the full lean client (as much cryptography per handshake
// as the server) cannot.

// ReplayClient names the replay flood in reports.
const ReplayClient = "replayed ClientHellos: the server's cryptography, no client cryptography"

// replayPool is how many distinct ClientHellos the replay flood sends in
// turn: each has its own key shares, so the server cannot reuse a key
// exchange, and 64 cost the client ~10 ms to make.
const replayPool = 64

// ReplayShape is what a replay run sent and waited for.
type ReplayShape struct {
	Client string `json:"client"` // ReplayClient
	Pool   int    `json:"pool"`   // distinct ClientHellos, sent in turn
	// ClientHelloBytes is the size of one ClientHello record, header
	// included; FlightRecords and FlightBytes the server's flight
	// (ServerHello through Finished) as one full handshake found it.
	ClientHelloBytes int `json:"client_hello_bytes"`
	FlightRecords    int `json:"flight_records"`
	FlightBytes      int `json:"flight_bytes"`
}

// calibrateTimeout is the least time the calibrating handshake gets.
const calibrateTimeout = 10 * time.Second

// replayState is what the workers of a replay run share; it is read-only
// once prepareReplay returns.
type replayState struct {
	hellos [][]byte
	flight leanclient.Flight
	dial   ConnDialer
	next   atomic.Uint64 // the next ClientHello of the pool
	shape  ReplayShape
}

// prepareReplay makes the pool of ClientHellos and calibrates the
// server's flight with one full handshake, before the load.
func (s *runState) prepareReplay(ctx context.Context) error {
	if !s.opts.Replay {
		return nil
	}
	r := &replayState{dial: s.dialConn}
	// The calibrating handshake is one, before the load: a flood's short
	// per-attempt Timeout (bench overload gives 250 ms) must not fail the
	// run because a busy machine took longer for it.
	cal := *s.client
	cal.Timeout = max(cal.Timeout, calibrateTimeout)
	flight, res, err := leanclient.Calibrate(ctx, s.opts.Target, &cal)
	if err != nil {
		return fmt.Errorf("failed to measure the server's flight with a full handshake: %w", err)
	}
	r.flight = flight
	for range replayPool {
		h, err := leanclient.ClientHelloRecord(s.client)
		if err != nil {
			return fmt.Errorf("failed to make a ClientHello to replay: %w", err)
		}
		r.hellos = append(r.hellos, h)
	}
	r.shape = ReplayShape{Client: ReplayClient, Pool: replayPool, ClientHelloBytes: len(r.hellos[0]),
		FlightRecords: flight.Records, FlightBytes: flight.Bytes}
	s.replay = r
	s.group, s.sig = res.Group, res.SignatureScheme
	return nil
}

// oneReplay makes one replay attempt and records its result.
func (s *runState) oneReplay(ctx context.Context, w *worker) bool {
	sent, recv, err := s.replay.attempt(ctx, s.opts.Target, s.opts.Timeout, w)
	if err != nil {
		s.failed.Add(1)
		s.recordErrorKind(replayErrorKind(err), err)
		return false
	}
	s.completed.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent += int64(sent)
	s.recv += int64(recv)
	s.flight = max(s.flight, recv)
	return true
}

// attempt connects, sends the next ClientHello of the pool and reads the
// server's flight, all within timeout, and closes.
func (r *replayState) attempt(ctx context.Context, addr string, timeout time.Duration, w *worker) (sent, recv int, err error) {
	// The deadline keeps a server that stops answering (or a flood of
	// its own making, queued) from holding the attempt past timeout.
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := r.dial(ctx, addr, timeout)
	if err != nil {
		return 0, 0, err
	}
	defer closeReset(conn)
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, 0, fmt.Errorf("failed to set a deadline: %w", err)
	}
	hello := r.hellos[r.next.Add(1)%uint64(len(r.hellos))]
	if _, err := conn.Write(hello); err != nil {
		return 0, 0, fmt.Errorf("failed to send the ClientHello: %w", err)
	}
	if w.br == nil {
		// The reader keeps record headers apart from the bodies it
		// discards: one read per segment instead of two per record.
		w.br = bufio.NewReaderSize(nil, 16<<10)
	}
	w.br.Reset(conn)
	defer w.br.Reset(nil)
	n, err := leanclient.ReadFlight(w.br, r.flight)
	return len(hello), n, err
}

// closeReset closes conn with a reset (SO_LINGER 0), as a flood does: no
// FIN exchange, and no TIME_WAIT state left in the client's kernel, which
// at thousands of attempts a second would hold hundreds of thousands of
// sockets and overflow tcp_max_tw_buckets. The server sees the reset
// where it waited for the client's Finished, after all its cryptography.
func closeReset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// replayErrorKind names a failed replay attempt for the error table:
// refused, reset, timeout and short-flight, or errorKind's names (an
// alert, not-tls, malformed) for what the server said.
func replayErrorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, leanclient.ErrShortFlight):
		return "short-flight"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		leanclient.KindOf(err) == leanclient.KindTimeout, errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return errorKind(err)
}

// replayReport fills what a replay run measured into r: a whole flight
// counts as a success, its latency runs to the flight's last byte.
func (s *runState) replayReport(r *Report) {
	shape := s.replay.shape
	r.Replay = &shape
	r.ServerFlightBytes = shape.FlightBytes
}
