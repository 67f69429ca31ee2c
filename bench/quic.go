package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pqedge/pqedge/pqtls/quicclient"
)

// Transports of a handshake benchmark.
const (
	TransportTCP  = "tcp"
	TransportQUIC = "quic"
)

// DefaultShapeRTT is the emulated round-trip time of the QUIC shape
// handshakes: long enough that the server's flights stand apart from the
// scheduling noise of a busy 2-core machine (on one shared by a dozen
// compilers a wakeup was seen to come 20–70 ms late, so flights are told
// apart by gaps of more than RTT/2 = 50 ms), short enough that three
// handshakes take about a second.
const DefaultShapeRTT = 100 * time.Millisecond

// QUICShape is what a few handshakes over an emulated path show about a
// QUIC handshake's shape, apart from the load that measures its CPU: the
// Initial packets the ClientHello took, the anti-amplification budget of
// RFC 9000 Section 8.1 against what the server sent before its Finished,
// and the round trips that took.
type QUICShape struct {
	RTT        time.Duration `json:"emulated_rtt_ns"`
	Handshakes int           `json:"handshakes"` // that succeeded; medians below are over them
	// InitialPackets and ClientHelloDatagrams are what the client's
	// ClientHello took (crypto/tls's ClientHello with the cell's groups).
	InitialPackets       int `json:"initial_packets"`
	ClientHelloDatagrams int `json:"client_hello_datagrams"`
	// ClientFirstFlight is what the client sent before the server could
	// answer; AmplificationBudget three times that.
	ClientFirstFlight   int `json:"client_first_flight_bytes"`
	AmplificationBudget int `json:"amplification_budget_bytes"`
	// ServerHandshakeBytes is what the server sent up to its Finished;
	// AmplificationLimited is set when that exceeds the budget.
	ServerHandshakeBytes int  `json:"server_handshake_bytes"`
	AmplificationLimited bool `json:"amplification_limited"`
	// RoundTrips is the median number of server flights up to its
	// Finished (1 at best), TimeToFinished the median time from the first
	// datagram to the handshake's completion on the emulated path.
	RoundTrips     int           `json:"round_trips"`
	TimeToFinished time.Duration `json:"time_to_finished_ns"`
	// Error is why no shape handshake succeeded.
	Error string `json:"error,omitempty"`
}

// setupTransport checks Transport and prepares the QUIC client.
func (s *runState) setupTransport() error {
	switch s.opts.Transport {
	case "", TransportTCP:
		s.opts.Transport = TransportTCP
		return nil
	case TransportQUIC:
	default:
		return fmt.Errorf("unknown transport %q, want %s or %s", s.opts.Transport, TransportTCP, TransportQUIC)
	}
	if s.opts.Resume {
		return fmt.Errorf("resumption is not measured over QUIC")
	}
	if len(s.opts.SignatureAlgorithms) > 0 {
		return fmt.Errorf("signature algorithms cannot be chosen over QUIC: crypto/tls offers its own")
	}
	s.quic = &quicclient.Config{
		ServerName: s.opts.ServerName, Groups: s.opts.Groups, Timeout: s.opts.Timeout,
		// The server's CPU for a handshake ends when it has read the
		// client's Finished; HANDSHAKE_DONE says it has.
		WaitConfirmed: true,
	}
	if s.opts.ShapeRTT <= 0 {
		s.opts.ShapeRTT = DefaultShapeRTT
	}
	if s.opts.ShapeCount == 0 {
		s.opts.ShapeCount = 3
	}
	return nil
}

// oneQUIC makes one load handshake over QUIC and records its result.
func (s *runState) oneQUIC(ctx context.Context) bool {
	res, err := quicclient.Dial(ctx, s.opts.Target, s.quic)
	if err != nil {
		s.failed.Add(1)
		s.recordError(err)
		return false
	}
	s.completed.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if res.HelloRetry {
		s.hrr++
	}
	s.sig = res.Signature
	s.sent += int64(res.BytesSent)
	s.recv += int64(res.BytesReceived)
	s.group = res.Group
	return true
}

// measureShape makes ShapeCount handshakes one after the other over the
// emulated path, before the load.
func (s *runState) measureShape(ctx context.Context) {
	if s.quic == nil || s.opts.ShapeCount < 0 {
		return
	}
	cfg := *s.quic
	cfg.RTT = s.opts.ShapeRTT
	sh := &QUICShape{RTT: cfg.RTT}
	var rts []int
	var took []time.Duration
	var lastErr error
	for range s.opts.ShapeCount {
		if ctx.Err() != nil {
			break
		}
		res, err := quicclient.Dial(context.WithoutCancel(ctx), s.opts.Target, &cfg)
		if err != nil {
			lastErr = err
			continue
		}
		sh.Handshakes++
		rts = append(rts, res.RoundTrips)
		took = append(took, res.Duration)
		w := res.ClientHello.Wire
		sh.InitialPackets, sh.ClientHelloDatagrams = w.Packets, w.Datagrams
		sh.ClientFirstFlight, sh.AmplificationBudget = res.ClientFirstFlight, res.AmplificationBudget
		sh.ServerHandshakeBytes = max(sh.ServerHandshakeBytes, res.ServerHandshakeBytes)
		sh.AmplificationLimited = sh.AmplificationLimited || res.AmplificationLimited
	}
	if sh.Handshakes == 0 {
		sh.Error = fmt.Sprintf("no shape handshake succeeded: %v", lastErr)
	} else {
		slices.Sort(rts)
		slices.Sort(took)
		sh.RoundTrips, sh.TimeToFinished = rts[len(rts)/2], took[len(took)/2]
	}
	s.shape = sh
}
