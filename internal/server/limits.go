package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/internal/h1guard"
	"github.com/pqedge/pqedge/internal/h2guard"
	"github.com/pqedge/pqedge/internal/plan"
)

// The connection limiter is a component of the Server: connections and
// handshakes in progress are counted across generations, so a reload
// cannot reset them. Each commit sets its caps from the plan's [limits]
// (connlimit.Limiter.SetOptions).
//
// Where the limits act, in a connection's life:
//
//	accept          connlimit: total and per-client connection caps, before
//	                any byte is read (acceptLoop)
//	handshake       connlimit: a handshake slot or a place in a bounded
//	                queue, at most handshakes_per_client per client
//	                address, reserved in acceptLoop before the connection's
//	                goroutine starts (a full queue is refused there, and
//	                the loop then pauses with a small listen backlog:
//	                waitForRoom) and waited for under the handshake
//	                deadline (handleConn), unless its client keeps it
//	                waiting for timeouts.handshake_idle while others wait
//	                (evicted: socketWatch); then a crypto slot for each
//	                burst of its CPU, at most GOMAXPROCS at once, paced
//	                through the network poller while handshakes queue
//	                (edgeConn.Read)
//	hand-off        h1guard or h2guard, by ALPN, around the connection the
//	                HTTP server reads (guard)
//	request         proxy.CheckRequest in the router; body, write and
//	                upstream bounds in proxy.HTTPProxy

// limiterOptions are connlimit's options for a plan's limits and its
// handshake idle timeout: a config 0 (no cap) is connlimit's negative.
func limiterOptions(l plan.Limits, t plan.Timeouts) connlimit.Options {
	noCapIfZero := func(n int) int {
		if n == 0 {
			return -1
		}
		return n
	}
	return connlimit.Options{
		MaxConns:          noCapIfZero(l.Connections),
		MaxConnsPerClient: noCapIfZero(l.ConnectionsPerClient),
		MaxHandshakes:     noCapIfZero(l.Handshakes),
		HandshakeQueue:    noCapIfZero(l.HandshakeQueue),
		CPUShare:          l.HandshakeCPU,

		MaxHandshakesPerClient: noCapIfZero(l.HandshakesPerClient),
		IdleGrace:              t.HandshakeIdle,
	}
}

// guard wraps a handshaken connection for its HTTP server: HTTP/2 with
// h2guard (client and server-provoked reset floods, empty-frame and
// control-frame floods, header blocks that outlast read_header), HTTP/1.x with h1guard (ambiguous framing refused below
// net/http, RFC 9112 section 6.3). The result is still a TLS connection to
// net/http (it has ConnectionState).
func (l *listenerRuntime) guard(tc *tls.Conn) net.Conn {
	g, m := l.gen.plan, l.gen.srv.metrics
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		resets, control := g.Limits.H2Resets, 0 // control: h2guard's internal default
		if resets == 0 {
			// h2_resets = 0 turns the guard's rate checks off, the
			// control-frame budget with them: the one escape hatch if a
			// client of the operator's ever trips either.
			resets, control = -1, -1
		}
		return h2guard.Wrap(tc, h2guard.Options{
			HeaderTimeout:    g.Timeouts.ReadHeader,
			MaxGlitches:      resets,
			GlitchWindow:     g.Limits.H2ResetWindow,
			MaxControlFrames: control,
			OnAbuse:          func(reason string) { m.h2Abuse.WithLabelValues(l.Name, reason).Inc() },
		})
	}
	return h1guard.Wrap(tc, h1guard.Options{
		MaxHeaderBytes:  g.Limits.RequestHeader,
		MaxHeaderFields: g.Limits.RequestHeaderFields,
		OnRefuse:        func(reason string) { m.h1Refused.WithLabelValues(l.Name, reason).Inc() },
	})
}

// tlsConnOf finds the *tls.Conn under the guards (they all have NetConn).
func tlsConnOf(c net.Conn) (*tls.Conn, bool) { return under[*tls.Conn](c) }

// under finds the first connection of type T in c or under it, following
// NetConn (crypto/tls's, connlimit's, the guards' and the PROXY reader's),
// a few wrappers deep.
func under[T any](c net.Conn) (T, bool) {
	for range 4 {
		if t, ok := c.(T); ok {
			return t, true
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = nc.NetConn()
	}
	var zero T
	return zero, false
}

// refusalReasons are the reasons of pqedge_connections_refused_total, the
// one list of them: the metric's HELP text and its values are made from it
// (docs/OPERATIONS.md and README's metrics table describe the same list).
var refusalReasons = []struct {
	name, help string
	count      func(connlimit.Stats) uint64
}{
	{"connections", "limits.connections reached, at accept (a QUIC connection at its first Initial)",
		func(st connlimit.Stats) uint64 { return st.RefusedTotal }},
	{"per_client", "limits.connections_per_client reached: at accept, or for QUIC once the handshake proved the address, after it",
		func(st connlimit.Stats) uint64 { return st.RefusedPerClient }},
	{"handshake_queue", "every handshake slot taken and the queue full, before any cryptography",
		func(st connlimit.Stats) uint64 { return st.HandshakesRefused }},
	{"handshakes_per_client", "the client address holds limits.handshakes_per_client handshake slots and queue places, before any cryptography",
		func(st connlimit.Stats) uint64 { return st.HandshakesRefusedPerClient }},
	{"handshake_wait", "the handshake deadline passed in the queue, before any cryptography",
		func(st connlimit.Stats) uint64 { return st.HandshakesExpired }},
	{"silent", "evicted to make room while handshakes waited: the client had sent no byte for timeouts.handshake_idle since the accept",
		func(st connlimit.Stats) uint64 { return st.HandshakesSilent }},
	{"stalled", "evicted to make room while handshakes waited: its ClientHello (or PROXY header) had stopped arriving for timeouts.handshake_idle, read by the handshake or waiting unread in the queue, pqedge having sent nothing yet",
		func(st connlimit.Stats) uint64 { return st.HandshakesStalled }},
}

// refusedHelp is pqedge_connections_refused_total's HELP text.
func refusedHelp() string {
	var b strings.Builder
	b.WriteString("Client connections closed by the limits, by reason: ")
	for i, r := range refusalReasons {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s)", r.name, r.help)
	}
	b.WriteString(".")
	return b.String()
}

// limiterCollector exports the limiter's counters at scrape time.
type limiterCollector struct {
	l                                         *connlimit.Limiter
	open, handshaking, waiting, refus, queued *prometheus.Desc
	cryptoWaiting, cryptoQueued, relayed      *prometheus.Desc
	pauses, paused                            *prometheus.Desc
	budgetWaits, budgetWaited                 *prometheus.Desc
}

func newLimiterCollector(l *connlimit.Limiter) *limiterCollector {
	return &limiterCollector{l: l,
		open:          prometheus.NewDesc("pqedge_connections_open", "Client connections open now (limits.connections caps them).", nil, nil),
		handshaking:   prometheus.NewDesc("pqedge_handshakes_in_progress", "TLS handshakes holding a slot now (limits.handshakes caps them).", nil, nil),
		waiting:       prometheus.NewDesc("pqedge_handshakes_waiting", "Connections waiting for a handshake slot now (limits.handshake_queue caps them).", nil, nil),
		refus:         prometheus.NewDesc("pqedge_connections_refused_total", refusedHelp(), []string{"reason"}, nil),
		cryptoWaiting: prometheus.NewDesc("pqedge_handshakes_crypto_waiting", "Handshakes that read their ClientHello and wait for a crypto slot now (GOMAXPROCS handshakes do their key exchange and signature at once).", nil, nil),
		cryptoQueued:  prometheus.NewDesc("pqedge_handshakes_crypto_queued_total", "Handshakes that found every crypto slot taken and waited for one.", nil, nil),
		relayed:       prometheus.NewDesc("pqedge_handshakes_crypto_relayed_total", "Crypto slots handed over through the network poller (connlimit's relay) rather than directly, while handshakes queued: each let established connections' ready requests run before the next handshake's cryptography.", nil, nil),
		pauses:        prometheus.NewDesc("pqedge_accept_pauses_total", "Times an accept loop waited because every handshake slot was taken and the queue was full (under a sustained flood about one per freed slot); meanwhile its listen backlog is 16 and the kernel drops new SYNs (TcpExtListenDrops in /proc/net/netstat).", nil, nil),
		paused:        prometheus.NewDesc("pqedge_accept_paused_seconds_total", "Time accept loops spent paused for handshake room, summed over the loops, pauses still going on included.", nil, nil),
		budgetWaits:   prometheus.NewDesc("pqedge_handshakes_cpu_budget_waits_total", "Hand-overs of the crypto gate's relay (a handshake's burst of cryptography, a queued connection's turn, a failed handshake's cleanup, an accept loop's yield) that waited, while handshakes queued, because the process had used more than limits.handshake_cpu of its CPUs.", nil, nil),
		budgetWaited:  prometheus.NewDesc("pqedge_handshakes_cpu_budget_waited_seconds_total", "Time the crypto gate's relay waited for the CPU budget (limits.handshake_cpu), its CPUs left idle for established connections meanwhile.", nil, nil),
		queued:        prometheus.NewDesc("pqedge_handshakes_queued_total", "Connections that found every handshake slot taken and waited in the queue (those that then got a slot, and those refused as handshake_wait).", nil, nil),
	}
}

func (c *limiterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.handshaking
	ch <- c.waiting
	ch <- c.refus
	ch <- c.queued
	ch <- c.cryptoWaiting
	ch <- c.cryptoQueued
	ch <- c.relayed
	ch <- c.pauses
	ch <- c.paused
	ch <- c.budgetWaits
	ch <- c.budgetWaited
}

func (c *limiterCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.Stats()
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(st.Conns))
	ch <- prometheus.MustNewConstMetric(c.handshaking, prometheus.GaugeValue, float64(st.Handshakes))
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(st.WaitingHandshakes))
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.CounterValue, float64(st.HandshakesQueued))
	ch <- prometheus.MustNewConstMetric(c.cryptoWaiting, prometheus.GaugeValue, float64(st.Crypto.Waiting))
	ch <- prometheus.MustNewConstMetric(c.cryptoQueued, prometheus.CounterValue, float64(st.Crypto.Queued))
	ch <- prometheus.MustNewConstMetric(c.relayed, prometheus.CounterValue, float64(st.Crypto.Relayed))
	ch <- prometheus.MustNewConstMetric(c.pauses, prometheus.CounterValue, float64(st.AcceptPauses))
	ch <- prometheus.MustNewConstMetric(c.paused, prometheus.CounterValue, st.AcceptPaused.Seconds())
	ch <- prometheus.MustNewConstMetric(c.budgetWaits, prometheus.CounterValue, float64(st.Crypto.BudgetWaits))
	ch <- prometheus.MustNewConstMetric(c.budgetWaited, prometheus.CounterValue, st.Crypto.BudgetWaited.Seconds())
	for _, r := range refusalReasons {
		ch <- prometheus.MustNewConstMetric(c.refus, prometheus.CounterValue, float64(r.count(st)), r.name)
	}
}
