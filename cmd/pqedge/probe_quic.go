package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/quicclient"
)

// defaultQUICTimeout bounds the probe's QUIC handshakes. UDP has no
// refusal: against a server without QUIC the first handshake waits this
// long, alongside the TCP probe.
const defaultQUICTimeout = 2 * time.Second

// startQUICProbe probes addr over QUIC in the background and returns a
// function that waits for the report (nil when -quic=false).
func startQUICProbe(ctx context.Context, on bool, addr, serverName string, timeout time.Duration) func() (*quicclient.ProbeReport, error) {
	if !on {
		return func() (*quicclient.ProbeReport, error) { return nil, nil }
	}
	type result struct {
		rep *quicclient.ProbeReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := quicclient.Probe(ctx, addr, quicclient.ProbeConfig{ServerName: serverName, Timeout: timeout})
		done <- result{rep, err}
	}()
	return func() (*quicclient.ProbeReport, error) {
		r := <-done
		return r.rep, r.err
	}
}

// quicJSON is the "quic" object of `probe -json`.
type quicJSON struct {
	QUIC  bool   `json:"quic"`
	HTTP3 bool   `json:"http3"`
	Error string `json:"error,omitempty"` // why no QUIC handshake completed
	// Of the handshake with crypto/tls's default groups:
	Version              string          `json:"version,omitempty"`
	ALPN                 string          `json:"alpn,omitempty"`
	Group                string          `json:"group,omitempty"`
	Signature            string          `json:"signature,omitempty"`
	InitialPackets       int             `json:"initial_packets,omitempty"`
	ClientFirstFlight    int             `json:"client_first_flight_bytes,omitempty"`
	AmplificationBudget  int             `json:"amplification_budget_bytes,omitempty"`
	ServerHandshakeBytes int             `json:"server_handshake_bytes,omitempty"`
	AmplificationLimited bool            `json:"amplification_limited"`
	Groups               []quicGroupJSON `json:"groups"`
}

type quicGroupJSON struct {
	Name     string `json:"name"`
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
}

func probeQUICJSON(r *quicclient.ProbeReport) *quicJSON {
	if r == nil {
		return nil
	}
	out := &quicJSON{QUIC: r.QUIC, HTTP3: r.HTTP3, Error: errString(r.FirstErr), Groups: []quicGroupJSON{}}
	if f := r.First; f != nil {
		out.Version, out.ALPN = f.Version.String(), f.ALPN
		out.Group, out.Signature = pqtls.GroupName(f.Group), pqtls.SignatureName(f.Signature)
		out.InitialPackets = f.ClientHello.Wire.Packets
		out.ClientFirstFlight, out.AmplificationBudget = f.ClientFirstFlight, f.AmplificationBudget
		out.ServerHandshakeBytes, out.AmplificationLimited = f.ServerHandshakeBytes, f.AmplificationLimited
	}
	for _, g := range r.Groups {
		out.Groups = append(out.Groups, quicGroupJSON{Name: pqtls.GroupName(g.Group), Accepted: g.Accepted, Error: errString(g.Err)})
	}
	return out
}

func printProbeQUIC(w io.Writer, r *quicclient.ProbeReport, timeout time.Duration) {
	if r == nil {
		return
	}
	fmt.Fprint(w, "\nHTTP/3 (QUIC on the same UDP port)\n")
	switch {
	case !r.QUIC:
		fmt.Fprintf(w, "  no QUIC: %s\n", quicFailure(r.FirstErr, timeout))
		return
	case !r.HTTP3:
		fmt.Fprintf(w, "  QUIC, but not HTTP/3: the server refused ALPN h3 (%s)\n", quicclient.ErrorKind(r.FirstErr))
		return
	}
	f := r.First
	fmt.Fprintf(w, "  speaks HTTP/3: yes (QUIC %s, ALPN %s, %s, %s)\n", f.Version, f.ALPN, pqtls.GroupName(f.Group), pqtls.SignatureName(f.Signature))
	limited := "fits"
	if f.AmplificationLimited {
		limited = "EXCEEDS: the server had to wait a round trip for the client before sending the rest (RFC 9000 8.1)"
	}
	fmt.Fprintf(w, "  ClientHello: %d Initial packets; client first flight %d B, budget 3x %d B; server sent %d B up to its Finished, %s\n",
		f.ClientHello.Wire.Packets, f.ClientFirstFlight, f.AmplificationBudget, f.ServerHandshakeBytes, limited)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  GROUP\tPQ\tACCEPTED\tERROR")
	for _, g := range r.Groups {
		e := ""
		if g.Err != nil {
			e = quicclient.ErrorKind(g.Err)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", pqtls.GroupName(g.Group), yesNo(pqtls.IsPostQuantumGroup(g.Group)), yesNo(g.Accepted), e)
	}
	tw.Flush()
}

// quicFailure says why no QUIC handshake completed, in a line.
func quicFailure(err error, timeout time.Duration) string {
	if quicclient.ErrorKind(err) == "timeout" {
		return fmt.Sprintf("no answer within %s (nothing listens on UDP, or a firewall drops it)", timeout)
	}
	return quicclient.ErrorKind(err) + ": " + errString(err)
}
