package server

import (
	"errors"
	"net"

	"github.com/pqedge/pqedge/proxy"
)

// serveStream relays a handshaken connection of a stream listener to its
// pool, with the handshake's facts for the PROXY v2 TLVs. It returns when
// the stream has ended.
func (l *listenerRuntime) serveStream(c net.Conn, ci *connInfo) {
	m := l.gen.srv.metrics
	m.streamsActive.Inc()
	defer m.streamsActive.Dec()
	l.stream.ServeConn(proxy.WithHandshakeFacts(l.gen.srv.ctx, ci.facts), c)
}

// streamEnded is a stream listener's OnStreamEnd: one access-log line and a
// count per stream, as requests get (the handshake facts come from the
// stream's context through StreamInfo).
func (s *Server) streamEnded(listener, site string, accessLog bool) func(proxy.StreamInfo) {
	return func(info proxy.StreamInfo) {
		end := streamEnd(info.Err)
		s.metrics.streams.WithLabelValues(listener, end).Inc()
		if !accessLog {
			return
		}
		attrs := []any{
			"listener", listener, "site", site, "remote", addrString(info.Client), "upstream", info.Upstream,
			"bytes_in", info.FromClient, "bytes_out", info.ToClient,
			"duration_ms", float64(info.Duration.Microseconds()) / 1000, "end", end,
		}
		if f := info.Facts; f != nil {
			attrs = append(attrs, "group", f.Group, "pq", f.PQ, "signature", f.Signature)
		}
		if info.Err != nil && end != "closed" {
			attrs = append(attrs, "err", info.Err.Error())
		}
		s.log.Info("stream", attrs...)
	}
}

// streamEnd names how a stream ended, the end label of pqedge_streams_total.
func streamEnd(err error) string {
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, proxy.ErrStreamProxyClosed):
		return "shutdown"
	case proxy.UpstreamUnreachable(err):
		return "upstream_unreachable"
	case proxy.IsIdleTimeout(err):
		return "idle_timeout"
	}
	return "reset"
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
