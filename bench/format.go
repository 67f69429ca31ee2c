package bench

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// WriteTable prints a report as an aligned two-column table. A run with no
// successful handshake prints only its errors.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("target", "%s", r.Target)
	if r.Transport == TransportQUIC {
		row("transport", "QUIC (quic-go, crypto/tls, ALPN h3)")
	}
	if r.Mode == "open" {
		row("load", "open loop, %.0f/s, at most %d in flight", r.Rate, r.Concurrency)
	} else {
		row("load", "closed loop, %d in flight", r.Concurrency)
	}
	if r.Request != "" {
		row("request", "GET %s after each handshake, response read to the server's close", r.Request)
	}
	if p := r.Replay; p != nil {
		row("client", "%s", p.Client)
		row("replayed", "%d distinct ClientHellos of %d B in turn; each attempt waits for the server's flight of %d records, %d B (ServerHello..Finished, measured by one full handshake)",
			p.Pool, p.ClientHelloBytes, p.FlightRecords, p.FlightBytes)
		row("attempts", "%d whole flights, %d failed, in %s", r.Succeeded, r.Failed, r.Elapsed.Round(time.Millisecond))
	} else {
		row("handshakes", "%d ok, %d failed, in %s", r.Succeeded, r.Failed, r.Elapsed.Round(time.Millisecond))
	}
	unit := "handshake"
	if r.Replay != nil {
		unit = "whole flight"
	}
	if r.Succeeded > 0 {
		row("negotiated", "%s, %s", r.Group, r.Signature)
		if r.Replay != nil {
			row("rate", "%.1f whole flights/s (the server's key exchange and signature each)", r.HandshakesPerSec)
		} else {
			row("rate", "%.1f handshakes/s", r.HandshakesPerSec)
		}
		row("latency", "p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
			fmtDur(r.Latency.P50), fmtDur(r.Latency.P90), fmtDur(r.Latency.P99), fmtDur(r.Latency.P999), fmtDur(r.Latency.Max))
		row("bytes/handshake", "client %.0f B, server %.0f B (TLS records)", r.ClientBytes, r.ServerBytes)
		if r.Request != "" {
			row("response", "%.0f B decrypted (status line, headers, body)", r.ResponseBytes)
		}
		if r.QUIC != nil {
			writeQUICRows(row, r.QUIC)
		} else {
			fits := "fits"
			if r.ExceedsInitCwnd {
				fits = "EXCEEDS"
			}
			row("server flight", "%d B, %s the initial window (%d B)", r.ServerFlightBytes, fits, certs.InitialWindowBytes)
		}
		if r.Replay == nil {
			row("HelloRetryRequest", "%.1f%%", 100*r.HRRRate)
		}
		if r.Replay != nil {
			row("resumed", "never (replayed ClientHellos offer no ticket)")
		} else if r.Resume {
			row("resumed", "%.1f%% (session tickets offered after each worker's first handshake)", 100*r.ResumedRate)
		} else {
			row("resumed", "off (every handshake is full)")
		}
		if r.ServerCPU > 0 {
			row("server CPU", "%s per %s (/proc, %d ticks/s)", fmtDur(r.ServerCPU), unit, ClockTicks())
		}
		row("client CPU", "%s per %s (getrusage)", fmtDur(r.ClientCPU), unit)
		other := "other processes"
		if r.ServerCPU == 0 {
			other = "the server and other processes"
		}
		row("machine noise", "%.2f CPUs busy with %s (/proc/stat)", r.OtherLoad, other)
	}
	for _, e := range r.Errors {
		row("error "+e.Kind, "%d (e.g. %s)", e.Count, e.Example)
	}
	return tw.Flush()
}

// fmtDur prints a duration with three significant digits in µs or ms.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return d.Round(time.Millisecond).String()
	}
}

// reportCSVHeader is the header of WriteReportCSV; durations are in µs.
var reportCSVHeader = []string{
	"target", "groups", "mode", "concurrency", "rate", "attempts", "succeeded", "failed",
	"elapsed_s", "handshakes_per_sec", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
	"group", "signature", "hrr_rate", "resumed_rate", "client_bytes", "server_bytes", "server_flight_bytes",
	"exceeds_initcwnd", "server_cpu_us", "client_cpu_us", "other_load", "errors",
	"transport", "initial_packets", "client_first_flight_bytes", "amplification_budget_bytes",
	"server_handshake_bytes", "amplification_limited", "round_trips", "emulated_rtt_ms",
	"client", "request", "response_bytes",
}

// WriteReportCSV writes reports as CSV with a header row. Runs without a
// successful handshake have empty measurement columns, never zeros. The
// client column is "replay" for a replay flood (its rows count whole
// server flights, not handshakes) and "full" otherwise.
func WriteReportCSV(w io.Writer, reports ...*Report) error {
	cw := csv.NewWriter(w)
	cw.Write(reportCSVHeader)
	for _, r := range reports {
		errs := ""
		for i, e := range r.Errors {
			if i > 0 {
				errs += ";"
			}
			errs += fmt.Sprintf("%s=%d", e.Kind, e.Count)
		}
		rec := []string{
			r.Target, joinNames(r.Groups), r.Mode, strconv.Itoa(r.Concurrency), ff(r.Rate, 1),
			strconv.Itoa(r.Attempts), strconv.Itoa(r.Succeeded), strconv.Itoa(r.Failed), ff(r.Elapsed.Seconds(), 3),
		}
		if r.Succeeded > 0 {
			rec = append(rec, ff(r.HandshakesPerSec, 1), us(r.Latency.P50), us(r.Latency.P90), us(r.Latency.P99),
				us(r.Latency.P999), us(r.Latency.Max), r.Group, r.Signature, ff(r.HRRRate, 4), optRate(r.Resume, r.ResumedRate),
				ff(r.ClientBytes, 0), ff(r.ServerBytes, 0), strconv.Itoa(r.ServerFlightBytes),
				strconv.FormatBool(r.ExceedsInitCwnd), optUS(r.ServerCPU), us(r.ClientCPU), ff(r.OtherLoad, 2))
		} else {
			rec = append(rec, make([]string, 17)...)
		}
		rec = append(rec, errs, r.Transport)
		if q := r.QUIC; q != nil && q.Handshakes > 0 {
			rec = append(rec, strconv.Itoa(q.InitialPackets), strconv.Itoa(q.ClientFirstFlight), strconv.Itoa(q.AmplificationBudget),
				strconv.Itoa(q.ServerHandshakeBytes), strconv.FormatBool(q.AmplificationLimited), strconv.Itoa(q.RoundTrips),
				ff(float64(q.RTT)/1e6, 1))
		} else {
			rec = append(rec, make([]string, 7)...)
		}
		client := "full"
		if r.Replay != nil {
			client = "replay"
		}
		rec = append(rec, client, r.Request, "")
		if r.Request != "" && r.Succeeded > 0 {
			rec[len(rec)-1] = ff(r.ResponseBytes, 0)
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

func joinNames(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += " "
		}
		s += n
	}
	return s
}

func ff(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }

func us(d time.Duration) string { return ff(float64(d)/float64(time.Microsecond), 1) }

// optRate leaves the resumed rate empty when resumption was not tried:
// "0" would read as "the server declined every ticket".
func optRate(tried bool, rate float64) string {
	if !tried {
		return ""
	}
	return ff(rate, 4)
}

func optUS(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return us(d)
}

// writeQUICRows prints the shape of a QUIC handshake.
func writeQUICRows(row func(k, format string, a ...any), q *QUICShape) {
	if q.Handshakes == 0 {
		row("QUIC shape", "unknown: %s", q.Error)
		return
	}
	row("ClientHello", "%d Initial packets in %d datagrams", q.InitialPackets, q.ClientHelloDatagrams)
	verdict := "within it"
	if q.AmplificationLimited {
		verdict = "EXCEEDS it: the server waits for the client before sending the rest"
	}
	row("amplification", "client first flight %d B, budget 3x = %d B (RFC 9000 8.1); server sent %d B up to its Finished, %s",
		q.ClientFirstFlight, q.AmplificationBudget, q.ServerHandshakeBytes, verdict)
	row("round trips", "%d to the server's Finished, %s (median of %d handshakes over an emulated %s round trip)",
		q.RoundTrips, fmtDur(q.TimeToFinished), q.Handshakes, q.RTT)
}
