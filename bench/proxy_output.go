package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteProxyTable prints a result: the load modes, the memory modes, the
// ratios of pqedge to the other fronts, failed cells and the checks.
func WriteProxyTable(w io.Writer, r *ProxyResult) error {
	pinned := "not pinned"
	if r.Pinned {
		pinned = "front on CPU 0; load generator, upstream and harness on CPU 1"
	}
	fmt.Fprintf(w, "machine: %s, %d CPUs, %s; load average %.2f before, %.2f after\n", r.Machine, r.CPUs, pinned, r.LoadAvg[0], r.LoadAvg[1])
	fmt.Fprintf(w, "%s, %s; %d runs of %s after %s of warm-up; %d connections (h1, h2) x %d streams (h2); %d stream connections; %d handshakes in flight; %d held connections; %d B answers\n\n",
		r.Group, r.Cert, r.Runs, r.Duration, r.Warmup, r.Connections, r.Streams, r.StreamConns, r.HSConc, r.IdleConns, r.BodyBytes)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tfront\trate\tfront CPU\tspread\tfront cores\tload CPU\tload cores\tothers\tp50\tp90\tp99\tRSS\tupstream conns/1k\tallocs/unit\talloc B/unit\t")
	for _, c := range r.Cells {
		if c.Error != "" || isMemoryMode(c.Mode) {
			continue
		}
		allocs, bytes := "-", "-"
		if c.GoRuntime {
			allocs, bytes = ff(c.AllocsPerUnit, 1), ff(c.AllocBytesPerUnit, 0)
		}
		upstream := "-"
		if c.Mode != ModeStream {
			upstream = ff(c.UpstreamPer1k, 1)
		}
		lat := [3]string{"-", "-", "-"}
		if c.P50 > 0 {
			lat = [3]string{fmtDur(c.P50), fmtDur(c.P90), fmtDur(c.P99)}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			c.Mode, c.Front, fmtRate(c.Rate, c.Unit), fmtDur(c.FrontCPU)+"/"+shortUnit(c.Unit), fmtSpread(c),
			c.FrontCores, fmtDur(c.LoadCPU), c.LoadCores, c.OtherLoad, lat[0], lat[1], lat[2], fmtMiB(c.RSS), upstream, allocs, bytes)
	}
	tw.Flush()
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tfront\tconnections\tRSS/conn\tspread\tlive heap/conn\tstacks/conn\tgoroutines/conn\tRSS\t")
	for _, c := range r.Cells {
		if c.Error != "" || !isMemoryMode(c.Mode) {
			continue
		}
		heap, stack, gs := "-", "-", "-"
		if c.GoRuntime {
			heap, stack, gs = fmtKiB(c.HeapPerConn), fmtKiB(c.StackPerConn), ff(c.GoroutinesPerConn, 2)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			c.Mode, c.Front, c.Conns, fmtKiB(c.RSSPerConn), fmtSpread(c), heap, stack, gs, fmtMiB(c.RSS))
	}
	tw.Flush()
	fmt.Fprintln(w)

	writeRatios(w, r)
	for _, c := range r.Cells {
		if c.Error != "" {
			fmt.Fprintf(w, "FAILED %s %s: %s\n", c.Mode, c.Front, truncate(c.Error, 300))
			for _, e := range c.Errors {
				fmt.Fprintf(w, "  %s: %d (e.g. %s)\n", e.Kind, e.Count, truncate(e.Example, 200))
			}
		}
	}
	fmt.Fprintf(w, "\nfront CPU is per unit (request, MiB echoed, connection) from /proc of the front; load is the other core's CPU per unit (h2load or the Go client, upstream, harness); others = CPUs busy with other processes; ! = spread over runs above %.0f%%\n\n", 100*SpreadLimit)
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

// writeRatios prints pqedge's main number over each other front's, mode
// by mode.
func writeRatios(w io.Writer, r *ProxyResult) {
	main := func(c *ProxyCell) float64 {
		if isMemoryMode(c.Mode) {
			return c.RSSPerConn
		}
		return float64(c.FrontCPU)
	}
	var lines []string
	for i := range r.Cells {
		a := &r.Cells[i]
		if a.Front != ServerPQEdge || a.Error != "" {
			continue
		}
		var parts []string
		for j := range r.Cells {
			b := &r.Cells[j]
			if b.Mode != a.Mode || b.Front == ServerPQEdge || b.Error != "" || main(b) <= 0 {
				continue
			}
			parts = append(parts, fmt.Sprintf("%.2fx %s", main(a)/main(b), b.Front))
		}
		if len(parts) > 0 {
			lines = append(lines, fmt.Sprintf("  %-13s %s", a.Mode, strings.Join(parts, ", ")))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "pqedge / other fronts (CPU per unit; memory per connection):")
		fmt.Fprintln(w, strings.Join(lines, "\n"))
		fmt.Fprintln(w)
	}
}

func fmtSpread(c ProxyCell) string {
	s := fmt.Sprintf("%.1f%%", 100*c.Spread)
	if c.Noisy {
		s += " !"
	}
	return s
}

func shortUnit(unit string) string {
	switch unit {
	case "request":
		return "req"
	case "connection":
		return "conn"
	}
	return unit
}

func fmtRate(rate float64, unit string) string {
	if unit == "MiB" {
		return fmt.Sprintf("%.1f MiB/s", rate)
	}
	return fmt.Sprintf("%.0f %s/s", rate, shortUnit(unit))
}

var proxyCSVHeader = []string{
	"mode", "front", "unit", "error", "runs", "rate", "front_cpu_us", "spread", "noisy", "front_cores",
	"load_cpu_us", "load_cores", "other_load", "p50_us", "p90_us", "p99_us", "rss_bytes", "upstream_conns_per_1k",
	"allocs_per_unit", "alloc_bytes_per_unit", "conns", "rss_per_conn", "heap_per_conn", "stack_per_conn", "goroutines_per_conn",
}

// WriteProxyCSV writes one row per cell (durations in µs, sizes in
// bytes). A failed cell has empty measurement columns, and columns that do
// not apply to a cell (memory numbers of a load mode, Go numbers of nginx)
// are empty, never zero.
func WriteProxyCSV(w io.Writer, r *ProxyResult) error {
	cw := csv.NewWriter(w)
	cw.Write(proxyCSVHeader)
	for _, c := range r.Cells {
		cw.Write(proxyCSVRow(c))
	}
	cw.Flush()
	return cw.Error()
}

func proxyCSVRow(c ProxyCell) []string {
	v := map[string]string{
		"mode": c.Mode, "front": c.Front, "unit": c.Unit, "error": c.Error, "runs": strconv.Itoa(len(c.Runs)),
	}
	if c.Error == "" {
		v["spread"], v["noisy"], v["rss_bytes"] = ff(c.Spread, 4), strconv.FormatBool(c.Noisy), strconv.FormatInt(c.RSS, 10)
		if isMemoryMode(c.Mode) {
			v["conns"], v["rss_per_conn"] = strconv.Itoa(c.Conns), ff(c.RSSPerConn, 0)
			if c.GoRuntime {
				v["heap_per_conn"], v["stack_per_conn"], v["goroutines_per_conn"] = ff(c.HeapPerConn, 0), ff(c.StackPerConn, 0), ff(c.GoroutinesPerConn, 3)
			}
		} else {
			v["rate"], v["front_cpu_us"], v["front_cores"] = ff(c.Rate, 1), us(c.FrontCPU), ff(c.FrontCores, 3)
			v["load_cpu_us"], v["load_cores"], v["other_load"] = us(c.LoadCPU), ff(c.LoadCores, 3), ff(c.OtherLoad, 2)
			if c.P50 > 0 {
				v["p50_us"], v["p90_us"], v["p99_us"] = us(c.P50), us(c.P90), us(c.P99)
			}
			if c.Mode != ModeStream {
				v["upstream_conns_per_1k"] = ff(c.UpstreamPer1k, 2)
			}
			if c.GoRuntime {
				v["allocs_per_unit"], v["alloc_bytes_per_unit"] = ff(c.AllocsPerUnit, 1), ff(c.AllocBytesPerUnit, 0)
			}
		}
	}
	rec := make([]string, len(proxyCSVHeader))
	for i, h := range proxyCSVHeader {
		rec[i] = v[h]
	}
	return rec
}

// WriteProxyFiles writes proxy.csv and proxy.json to dir and returns
// their paths.
func WriteProxyFiles(dir string, r *ProxyResult) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("failed to make %s: %w", dir, err)
	}
	var paths []string
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{
		{"proxy.csv", func(w io.Writer) error { return WriteProxyCSV(w, r) }},
		{"proxy.json", func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		}},
	} {
		p := filepath.Join(dir, f.name)
		out, err := os.Create(p)
		if err != nil {
			return nil, fmt.Errorf("failed to create %s: %w", p, err)
		}
		if err := f.write(out); err != nil {
			out.Close()
			return nil, fmt.Errorf("failed to write %s: %w", p, err)
		}
		if err := out.Close(); err != nil {
			return nil, fmt.Errorf("failed to write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
