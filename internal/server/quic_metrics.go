package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// quicMetrics are the series of the HTTP/3 listeners that the handshake
// events do not carry: what never became a handshake. Handshakes over
// QUIC are counted with the others (pqedge_handshakes_total and
// pqedge_handshake_failures_total, transport "quic").
type quicMetrics struct {
	// drops is every QUIC transport's qlog recorder: packets quic-go
	// dropped before a connection took them, by its reason.
	drops *quicDropRecorder
	// refused counts connections refused at their first Initial, before
	// any cryptography, by reason (quicRefused*).
	refused *prometheus.CounterVec
	// unrecorded counts QUIC handshakes whose ClientHello the tracker
	// could not give (it was full, or the attempt was not authentic):
	// served all the same, with less insight.
	unrecorded prometheus.Counter
}

// Reasons of pqedge_quic_connections_refused_total.
const (
	// quicRefusedUnreadable: the Initial that opened the connection could
	// not be opened with the keys its own header gives (RFC 9001 Section
	// 5.2): noise, a truncated or corrupted packet, or an attack. quic-go
	// would keep such a connection until its handshake timed out.
	quicRefusedUnreadable = "unreadable_initial"
	// quicRefusedNoListener: the address's listener is not in the current
	// config (a reload is removing it, or its config is not live yet).
	quicRefusedNoListener = "no_listener"
)

func newQUICMetrics(reg *prometheus.Registry) *quicMetrics {
	m := &quicMetrics{
		drops: &quicDropRecorder{c: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_quic_packets_dropped_total",
			Help: "UDP datagrams the HTTP/3 listeners' QUIC transports dropped before any connection took them, by quic-go's reason (header_parse_error, unexpected_packet: e.g. an Initial under 1,200 bytes, unexpected_version, dos_prevention: a queue was full, unknown_connection_id).",
		}, []string{"reason"})},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_quic_connections_refused_total",
			Help: "QUIC connections refused at their first Initial packet, before any cryptography: unreadable_initial (nothing could open it: noise, truncated or corrupted), no_listener. The connection caps count in pqedge_connections_refused_total.",
		}, []string{"reason"}),
		unrecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pqedge_quic_clienthellos_unrecorded_total",
			Help: "QUIC handshakes served without a recorded ClientHello (the recorder was full or could not read the client's Initials): no key shares, JA4 or family for them.",
		}),
	}
	reg.MustRegister(m.drops.c, m.refused, m.unrecorded)
	return m
}

// quicDropRecorder is a qlogwriter.Recorder that counts PacketDropped
// events and ignores the rest. Safe for concurrent use (CounterVec is).
type quicDropRecorder struct {
	c *prometheus.CounterVec
}

var _ qlogwriter.Recorder = (*quicDropRecorder)(nil)

func (r *quicDropRecorder) RecordEvent(ev qlogwriter.Event) {
	if d, ok := ev.(qlog.PacketDropped); ok {
		r.c.WithLabelValues(string(d.Trigger)).Inc()
	}
}

// Close does nothing: the recorder is shared by every transport and lives
// as long as the server's metrics.
func (r *quicDropRecorder) Close() error { return nil }
