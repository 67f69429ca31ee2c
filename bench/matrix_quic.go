package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// QUICComparison is one QUIC cell beside the TCP cell of the same server,
// group and certificate: where each pays an extra round trip and why.
type QUICComparison struct {
	Server, Group, Cert string
	QUIC                *QUICShape
	// TCPFlight is the TCP cell's first flight and TCPExtra its modeled
	// extra round trips (initial window); -1 without a TCP cell.
	TCPFlight, TCPExtra int
	QUICExtra           int // measured: QUIC.RoundTrips - 1
	Verdict             string
}

// CompareTransports pairs every measured QUIC cell with its TCP cell.
func CompareTransports(r *MatrixResult) []QUICComparison {
	var out []QUICComparison
	for _, q := range r.Cells {
		if q.Transport != TransportQUIC || q.Error != "" || q.QUIC == nil || q.QUIC.Handshakes == 0 {
			continue
		}
		cmp := QUICComparison{Server: q.Server, Group: q.Group, Cert: q.Cert, QUIC: q.QUIC, TCPFlight: -1, TCPExtra: -1, QUICExtra: max(0, q.QUIC.RoundTrips-1)}
		for _, t := range r.Cells {
			if t.Transport != TransportQUIC && t.Error == "" && t.Server == q.Server && t.Group == q.Group && t.Cert == q.Cert {
				cmp.TCPFlight, cmp.TCPExtra = t.ServerFlightBytes, t.ExtraRoundTrips
			}
		}
		cmp.Verdict = verdict(cmp)
		out = append(out, cmp)
	}
	return out
}

func verdict(c QUICComparison) string {
	switch {
	case c.TCPExtra < 0:
		return fmt.Sprintf("QUIC +%d RTT (no TCP cell)", c.QUICExtra)
	case c.QUICExtra > c.TCPExtra && c.QUIC.AmplificationLimited:
		return "extra round trip over QUIC only: anti-amplification"
	case c.QUICExtra > c.TCPExtra:
		return "extra round trip over QUIC only"
	case c.QUICExtra < c.TCPExtra:
		return "extra round trip over TCP only: initial window"
	case c.QUICExtra > 0:
		return "extra round trip over both"
	}
	return "one round trip over both"
}

// writeQUICMatrix prints the QUIC cells' shape beside TCP, when there are
// any.
func writeQUICMatrix(w io.Writer, r *MatrixResult) {
	cmps := CompareTransports(r)
	if len(cmps) == 0 {
		return
	}
	var rtt string
	for _, c := range cmps {
		rtt = c.QUIC.RTT.String()
	}
	fmt.Fprintf(w, "QUIC handshake shape (round trips measured over an emulated %s path; TCP's extra round trips modeled with the initial window above)\n", rtt)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tgroup\tcert\tCH Initials\tclient 1st B\tbudget 3x B\tserver to Fin B\tlimited\tQUIC RTTs\tTCP flight B\tTCP +RTT\tverdict\t")
	for _, c := range cmps {
		q := c.QUIC
		limited := "no"
		if q.AmplificationLimited {
			limited = "YES"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d in %d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%s\t\n", c.Server, c.Group, c.Cert,
			q.InitialPackets, q.ClientHelloDatagrams, q.ClientFirstFlight, q.AmplificationBudget, q.ServerHandshakeBytes,
			limited, q.RoundTrips, c.TCPFlight, c.TCPExtra, c.Verdict)
	}
	tw.Flush()
	fmt.Fprintln(w)
}
