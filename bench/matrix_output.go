package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
)

// WriteMatrixTable prints the cells as an aligned table, then the
// primitive costs, the model and the checks.
func WriteMatrixTable(w io.Writer, r *MatrixResult) error {
	pinned := "not pinned"
	if r.Pinned {
		pinned = "server on CPU 0, client on CPU 1"
	}
	fmt.Fprintf(w, "machine: %s, %d CPUs, %s; %d runs of %s, %d in flight\n", r.Machine, r.CPUs, pinned, r.Runs, r.Duration, r.Concurrency)
	if r.Request != "" {
		fmt.Fprintf(w, "each handshake: + GET %s, response read to the server's close; servers proxy it to one upstream; CPU and bytes per handshake + request\n", r.Request)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\ttransport\tgroup\tcert\tsigner\ths/s\tserver CPU\tspread\tothers\tclient CPU\tprimitives\toverhead\tclient B\tserver B\tflight B\t+RTT\tTTFB model\t")
	for _, c := range r.Cells {
		if c.Error != "" {
			continue // listed below the table, where a long reason cannot break the columns
		}
		flag := ""
		if c.Noisy {
			flag = " !"
		}
		prim, over := "-", "-"
		if c.Primitives > 0 {
			prim, over = fmtDur(c.Primitives), fmtDur(c.Overhead)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%.1f%%%s\t%.2f\t%s\t%s\t%s\t%.0f\t%.0f\t%d\t%d\t%s\t\n",
			c.Server, c.Transport, c.Group, c.Cert, c.Signer, c.HandshakesPerSec, fmtDur(c.ServerCPU), 100*c.Spread, flag, c.OtherLoad,
			fmtDur(c.ClientCPU), prim, over, c.ClientBytes, c.ServerBytes, c.ServerFlightBytes, c.ExtraRoundTrips, fmtDur(c.TTFB))
	}
	tw.Flush()
	for _, c := range r.Cells {
		switch {
		case c.Skipped:
			fmt.Fprintf(w, "SKIPPED %s %s %s %s: %s\n", c.Server, c.Transport, c.Group, c.Cert, truncate(c.Error, 300))
		case c.Error != "":
			fmt.Fprintf(w, "FAILED %s %s %s %s: %s\n", c.Server, c.Transport, c.Group, c.Cert, truncate(c.Error, 300))
		}
	}
	fmt.Fprintf(w, "\n! = spread of server CPU over runs above %.0f%%; others = CPUs other processes kept busy (median over runs)\n", 100*SpreadLimit)
	fmt.Fprintf(w, "TTFB model (RTT %s, initcwnd %d x %d B): %s\n\n", r.Network.RTT, r.Network.InitCwnd, r.Network.MSS, r.Model)
	writeQUICMatrix(w, r)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group\tkeygen\tencaps (server)\tdecaps\t")
	for _, k := range r.KEM {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", k.Group, fmtDur(k.KeyGen), fmtDur(k.Encaps), fmtDur(k.Decaps))
	}
	fmt.Fprintln(tw, "\t\t\t\t")
	fmt.Fprintln(tw, "cert\tsign\t\t\t")
	for _, s := range r.Sign {
		fmt.Fprintf(tw, "%s\t%s\t\t\t\n", s.Cert, fmtDur(s.Sign))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, c := range r.Checks {
		state := "HOLDS"
		switch {
		case c.Skipped:
			state = "n/a"
		case !c.Holds:
			state = "FAILS"
		}
		fmt.Fprintf(w, "%-5s  %s: %s\n", state, c.Name, c.Detail)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var matrixCSVHeader = []string{
	"server", "group", "cert", "signer", "error", "runs", "handshakes_per_sec", "server_cpu_us", "spread",
	"noisy", "other_load", "client_cpu_us", "primitives_us", "overhead_us", "p50_us", "p99_us", "client_bytes",
	"server_bytes", "server_flight_bytes", "extra_round_trips", "ttfb_model_ms",
	"transport", "initial_packets", "client_first_flight_bytes", "amplification_budget_bytes",
	"server_handshake_bytes", "amplification_limited", "round_trips", "emulated_rtt_ms",
	"request",
}

// WriteMatrixCSV writes one row per cell; failed cells have empty
// measurement columns.
func WriteMatrixCSV(w io.Writer, r *MatrixResult) error {
	cw := csv.NewWriter(w)
	cw.Write(matrixCSVHeader)
	for _, c := range r.Cells {
		rec := []string{c.Server, c.Group, c.Cert, c.Signer, c.Error, strconv.Itoa(len(c.Runs))}
		if c.Error == "" {
			prim, over := "", ""
			if c.Primitives > 0 {
				prim, over = us(c.Primitives), us(c.Overhead)
			}
			rec = append(rec, ff(c.HandshakesPerSec, 1), us(c.ServerCPU), ff(c.Spread, 4),
				strconv.FormatBool(c.Noisy), ff(c.OtherLoad, 2), us(c.ClientCPU), prim, over, us(c.P50), us(c.P99),
				ff(c.ClientBytes, 0), ff(c.ServerBytes, 0), strconv.Itoa(c.ServerFlightBytes),
				strconv.Itoa(c.ExtraRoundTrips), ff(float64(c.TTFB)/1e6, 3))
		} else {
			rec = append(rec, make([]string, 15)...)
		}
		rec = append(rec, c.Transport)
		if q := c.QUIC; c.Error == "" && q != nil && q.Handshakes > 0 {
			rec = append(rec, strconv.Itoa(q.InitialPackets), strconv.Itoa(q.ClientFirstFlight), strconv.Itoa(q.AmplificationBudget),
				strconv.Itoa(q.ServerHandshakeBytes), strconv.FormatBool(q.AmplificationLimited), strconv.Itoa(q.RoundTrips),
				ff(float64(q.RTT)/1e6, 1))
		}
		rec = append(rec, make([]string, len(matrixCSVHeader)-1-len(rec))...)
		rec = append(rec, r.Request)
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

// WriteMatrixFiles writes matrix.csv, matrix.json and matrix.svg to dir
// and returns their paths.
func WriteMatrixFiles(dir string, r *MatrixResult) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("failed to make %s: %w", dir, err)
	}
	var paths []string
	write := func(name string, f func(io.Writer) error) error {
		p := filepath.Join(dir, name)
		out, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("failed to create %s: %w", p, err)
		}
		if err := f(out); err != nil {
			out.Close()
			return fmt.Errorf("failed to write %s: %w", p, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("failed to write %s: %w", p, err)
		}
		paths = append(paths, p)
		return nil
	}
	if err := write("matrix.csv", func(w io.Writer) error { return WriteMatrixCSV(w, r) }); err != nil {
		return nil, err
	}
	if err := write("matrix.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}); err != nil {
		return nil, err
	}
	if err := write("matrix.svg", func(w io.Writer) error { return WriteSVG(w, r) }); err != nil {
		return nil, err
	}
	return paths, nil
}
