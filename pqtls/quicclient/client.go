package quicclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/leanclient"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// DefaultTimeout bounds a handshake when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// AmplificationFactor is how many times the bytes it received a server
// may send to an address it has not validated (RFC 9000 Section 8.1).
const AmplificationFactor = 3

// Config says how to make one handshake.
type Config struct {
	ServerName string
	// Groups become crypto/tls's CurvePreferences: the client offers them
	// and sends a key share for the first (with X25519MLKEM768 first and
	// x25519 also listed, crypto/tls adds an x25519 share). Empty means
	// crypto/tls's defaults.
	Groups []tls.CurveID
	// ALPN is offered in order; empty means "h3". pqtls.ALPNPQEdge is
	// offered last, whatever the list.
	ALPN []string
	// Timeout bounds the handshake and the wait for confirmation (default
	// DefaultTimeout).
	Timeout time.Duration
	// RTT, when positive, holds every datagram from the server back this
	// long before quic-go reads it: on loopback the path then has this
	// round-trip time, and Result.RoundTrips counts the server's flights.
	RTT time.Duration
	// WaitConfirmed waits, after the handshake completes, for the
	// server's HANDSHAKE_DONE (RFC 9001 Section 4.1.2), the proof that
	// the server has processed the client's Finished: what a benchmark
	// needs before it closes, so the server's whole handshake is done.
	WaitConfirmed bool
}

// Result is what one handshake negotiated and cost on the wire. Byte
// counts are UDP payloads (QUIC packets with their headers and AEAD
// tags, no IP or UDP headers).
type Result struct {
	Group      tls.CurveID
	Signature  tls.SignatureScheme // derived from the leaf key and the offered list
	ALPN       string
	HelloRetry bool
	Version    quic.Version
	// Certificates is the server's chain, parsed but not verified.
	Certificates []*x509.Certificate
	ChainBytes   int

	// ClientHello is the client's own ClientHello as it left in its
	// Initial packets; Wire.Packets and Wire.Datagrams say how many.
	ClientHello *pqtls.ClientHello

	// ClientFirstFlight is what the client sent before anything came
	// back: the Initial datagrams of its ClientHello, padded to at least
	// 1,200 bytes each (RFC 9000 Section 14.1). AmplificationBudget is
	// AmplificationFactor times that: what the server may send before the
	// client's next datagram arrives.
	ClientFirstFlight   int
	AmplificationBudget int
	// ServerHandshakeBytes is what the server sent up to and including
	// the datagram that completed the handshake (its Finished);
	// ClientHandshakeBytes what the client sent before that datagram.
	ServerHandshakeBytes int
	ClientHandshakeBytes int
	// AmplificationLimited is true when ServerHandshakeBytes exceeds
	// AmplificationBudget: the server could not send its whole flight
	// before hearing from the client again.
	AmplificationLimited bool
	// RoundTrips counts the server's flights up to the one carrying its
	// Finished: datagrams that arrive more than RTT/2 after the previous
	// one start a new flight. Only with Config.RTT > 0; zero otherwise.
	RoundTrips int

	// BytesSent and BytesReceived count everything until the handshake
	// was confirmed (with WaitConfirmed) or completed, before the
	// client's CONNECTION_CLOSE; likewise the datagram counts.
	BytesSent, BytesReceived         int
	DatagramsSent, DatagramsReceived int
	// Duration runs from the first datagram sent to handshake completion.
	Duration time.Duration
}

// Dial makes one QUIC handshake with addr (HOST:PORT over UDP) and
// measures it. The connection is closed before Dial returns, with
// application error 0x100 (H3_NO_ERROR, RFC 9114 Section 8.1). Errors
// are those of quic-go; ErrorKind names them for tables.
func Dial(ctx context.Context, addr string, cfg *Config) (*Result, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, &addressError{fmt.Errorf("failed to resolve %s: %w", addr, err)}
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("failed to open a UDP socket: %w", err)
	}
	mc := newMeasuringConn(udp, cfg.RTT)
	tr := &quic.Transport{Conn: mc}
	defer func() {
		tr.Close()
		mc.Close()
	}()
	alpn := cfg.ALPN
	if len(alpn) == 0 {
		alpn = []string{"h3"}
	}
	// Say who we are, so a pqedge server keeps probes and benchmarks out
	// of its adoption numbers (pqtls.ALPNPQEdge); last, so a server that
	// picks by its own preference never chooses it.
	alpn = append(slices.Clone(alpn), pqtls.ALPNPQEdge)
	tlsConf := &tls.Config{
		ServerName: cfg.ServerName,
		// A probe meets private CAs and a benchmark measures the server:
		// the chain is not verified (the signature still is, by crypto/tls).
		InsecureSkipVerify: true,
		NextProtos:         alpn,
		CurvePreferences:   cfg.Groups,
		MinVersion:         tls.VersionTLS13,
	}
	confirmed := make(chan struct{})
	var once sync.Once
	qconf := &quic.Config{
		HandshakeIdleTimeout: timeout,
		MaxIdleTimeout:       timeout,
		Tracer: func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace {
			return confirmTrace{func() { once.Do(func() { close(confirmed) }) }}
		},
	}
	start := time.Now()
	conn, err := tr.Dial(ctx, raddr, tlsConf, qconf)
	if err != nil {
		return nil, err
	}
	done := time.Now()
	defer conn.CloseWithError(0x100, "")
	if cfg.WaitConfirmed {
		select {
		case <-confirmed:
		case <-ctx.Done():
			return nil, fmt.Errorf("handshake completed but not confirmed (no HANDSHAKE_DONE): %w", ctx.Err())
		case <-conn.Context().Done():
			return nil, fmt.Errorf("connection closed before the handshake was confirmed: %w", context.Cause(conn.Context()))
		}
	}
	return newResult(conn, mc, cfg.RTT, start, done)
}

func newResult(conn *quic.Conn, mc *measuringConn, rtt time.Duration, start, done time.Time) (*Result, error) {
	st := conn.ConnectionState()
	r := &Result{
		Group: st.TLS.CurveID, ALPN: st.TLS.NegotiatedProtocol, HelloRetry: st.TLS.HelloRetryRequest,
		Version: st.Version, Duration: done.Sub(start),
	}
	for _, c := range st.TLS.PeerCertificates {
		r.Certificates = append(r.Certificates, c)
		r.ChainBytes += len(c.Raw)
	}
	mc.mu.Lock()
	ch, err := mc.hello.ClientHello()
	mc.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("failed to read back the client's own ClientHello: %w", err)
	}
	r.ClientHello = ch
	if len(r.Certificates) > 0 {
		if s, err := pqtls.SignatureFor(r.Certificates[0].PublicKey, tls.VersionTLS13, ch.SignatureAlgorithms); err == nil {
			r.Signature = s
		}
	}
	sent, received := mc.snapshot()
	r.measure(sent, received, rtt, done)
	return r, nil
}

// measure fills the byte counts and the flights from the datagrams seen.
func (r *Result) measure(sent, received []datagramEvent, rtt time.Duration, done time.Time) {
	for _, e := range sent {
		r.BytesSent += e.size
	}
	for _, e := range received {
		r.BytesReceived += e.size
	}
	r.DatagramsSent, r.DatagramsReceived = len(sent), len(received)
	if len(received) == 0 {
		return
	}
	first := received[0].at
	for _, e := range sent {
		if e.at.Before(first) {
			r.ClientFirstFlight += e.size
		}
	}
	r.AmplificationBudget = AmplificationFactor * r.ClientFirstFlight
	// The datagram that completed the handshake is the last one quic-go
	// read before Dial returned.
	fin := -1
	for i, e := range received {
		if !e.at.After(done) {
			fin = i
		}
	}
	if fin < 0 {
		return
	}
	for _, e := range received[:fin+1] {
		r.ServerHandshakeBytes += e.size
	}
	finAt := received[fin].at
	for _, e := range sent {
		if e.at.Before(finAt) {
			r.ClientHandshakeBytes += e.size
		}
	}
	r.AmplificationLimited = r.ServerHandshakeBytes > r.AmplificationBudget
	if rtt > 0 {
		r.RoundTrips = 1
		for i := 1; i <= fin; i++ {
			if received[i].at.Sub(received[i-1].at) > rtt/2 {
				r.RoundTrips++
			}
		}
	}
}

// confirmTrace is a qlog trace that calls confirmed when a packet carrying
// HANDSHAKE_DONE arrives, and records nothing else.
type confirmTrace struct{ confirmed func() }

func (t confirmTrace) AddProducer() qlogwriter.Recorder { return confirmRecorder(t) }

type confirmRecorder struct{ confirmed func() }

func (r confirmRecorder) RecordEvent(ev qlogwriter.Event) {
	p, ok := ev.(qlog.PacketReceived)
	if !ok {
		return
	}
	for _, f := range p.Frames {
		if _, ok := f.Frame.(*qlog.HandshakeDoneFrame); ok {
			r.confirmed()
		}
	}
}

func (confirmRecorder) Close() error { return nil }

// ErrorKind names a handshake failure for an error table: "timeout",
// "alert:NAME" (the server refused the TLS handshake, RFC 9001
// Section 4.8), "transport:CODE" (another QUIC error), "dial" (no socket
// or address) or "other". Nothing listening on a UDP port shows as a
// timeout: an unconnected UDP socket is not told of ICMP errors.
func ErrorKind(err error) string {
	var te *quic.TransportError
	var he *quic.HandshakeTimeoutError
	var ie *quic.IdleTimeoutError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &he), errors.As(err, &ie), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError():
		return "alert:" + leanclient.AlertName(uint8(te.ErrorCode-0x100))
	case errors.As(err, &te):
		return "transport:" + te.ErrorCode.String()
	case errors.As(err, &ne):
		return "dial"
	}
	return "other"
}
