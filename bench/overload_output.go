package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteOverloadTable prints a result: one row per run, then the medians
// per front and the checks.
func WriteOverloadTable(w io.Writer, r *OverloadResult) error {
	pinned := "not pinned"
	if r.Pinned {
		pinned = "front on CPU 0; upstream, clients and flood on CPU 1"
	}
	fmt.Fprintf(w, "machine: %s, %d CPUs, %s; load average %.2f before, %.2f after\n", r.Machine, r.CPUs, pinned, r.LoadAvg[0], r.LoadAvg[1])
	fmt.Fprintf(w, "%s, %s; %d runs; %d keep-alive connections, %.0f requests/s in all, %s per phase; flood at %.1fx capacity from %d addresses, measured after %s\n",
		r.Group, r.Cert, r.Runs, r.Conns, r.RequestRate, r.Duration, r.Flood, r.Sources, r.FloodLead)
	fmt.Fprintf(w, "flood client: %s (%s), each attempt given up after %s\n", r.FloodClient, r.FloodClientAbout, r.FloodTimeout)
	if r.ControlRate > 0 {
		fmt.Fprintf(w, "control: %.0f requests/s on %d connections straight to the upstream in both phases; the front is not on their path\n", r.ControlRate, controlConns)
	}
	fmt.Fprintln(w)
	completedCol := "completed"
	if r.FloodClient == FloodReplay {
		// Replayed handshakes never complete at the front: what counts
		// is how many whole flights (the front's cryptography) went out.
		completedCol = "whole flights"
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "front\trun\tcapacity\tunloaded p50\tp99\tp99.9\tflooded p50\tp99\tp99.9\tratio\tfailed\tcontrol p99\tratio\tflood asked\tattempted\treached\t"+completedCol+"\tqueued\trefused\tfront cores\tothers\t")
	for _, f := range r.Fronts {
		for i, run := range f.Runs {
			queued, refused := "-", "-"
			if s := run.Server; s != nil {
				queued, refused = ff(s.Queued, 0), ff(s.RefusedTotal(), 0)
			}
			completed := fmt.Sprintf("%d", run.Flood.Succeeded)
			if s := run.Server; s != nil && r.FloodClient != FloodReplay {
				// The front's own count: the client misses handshakes
				// it gave up on after the front finished them.
				completed = ff(s.Handshakes, 0)
			}
			ctlP99, ctlRatio := "-", "-"
			if c := run.Control; c != nil {
				ctlP99 = fmtDur(c.Unloaded.Latency.P99) + " / " + fmtDur(c.Flooded.Latency.P99)
				ctlRatio = fmt.Sprintf("%.2fx", c.Ratio)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f/s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2fx\t%d\t%s\t%s\t%.0f/s\t%.0f/s\t%.0f%%\t%s\t%s\t%s\t%.2f\t%.2f\t\n",
				f.Front, i+1, run.Capacity,
				fmtDur(run.Unloaded.Latency.P50), fmtDur(run.Unloaded.Latency.P99), fmtDur(run.Unloaded.Latency.P999),
				fmtDur(run.Flooded.Latency.P50), fmtDur(run.Flooded.Latency.P99), fmtDur(run.Flooded.Latency.P999),
				run.Ratio, run.Unloaded.Failed+run.Flooded.Failed, ctlP99, ctlRatio, run.Flood.Rate, run.Flood.AttemptRate, 100*run.Flood.Reached,
				completed, queued, refused, run.FrontCores, run.OtherLoad)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "front\truns\tcapacity\tunloaded p99\tflooded p99\tratio (median)\tratio range\trequests failed\tcontrol ratio (median)\tflood reached (median)\t")
	for _, f := range r.Fronts {
		if f.Error != "" {
			continue
		}
		ctl := "-"
		if f.ControlRatio > 0 {
			ctl = fmt.Sprintf("%.2fx", f.ControlRatio)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f/s\t%s\t%s\t%.2fx\t%.2f-%.2f\t%d\t%s\t%.0f%% of %.1fx\t\n", f.Front, len(f.Runs), f.Capacity,
			fmtDur(f.UnloadedP99), fmtDur(f.FloodedP99), f.Ratio, f.RatioMin, f.RatioMax, f.Failed, ctl, 100*f.FloodReached, r.Flood)
	}
	tw.Flush()

	for _, f := range r.Fronts {
		if f.Error != "" {
			fmt.Fprintf(w, "\n%s FAILED: %s\n", f.Front, f.Error)
		}
	}
	var lines []string
	for _, f := range r.Fronts {
		for i, run := range f.Runs {
			if errs := append(append([]ErrorCount{}, run.Unloaded.Errors...), run.Flooded.Errors...); len(errs) > 0 {
				lines = append(lines, fmt.Sprintf("%s run %d requests: %s", f.Front, i+1, fmtErrorCounts(errs)))
			}
			if len(run.Flood.Errors) > 0 {
				lines = append(lines, fmt.Sprintf("%s run %d flood: %s", f.Front, i+1, fmtErrorCounts(run.Flood.Errors)))
			}
			if s := run.Server; s != nil && len(s.Refused) > 0 {
				var parts []string
				for _, k := range slices.Sorted(maps.Keys(s.Refused)) {
					parts = append(parts, fmt.Sprintf("%s %.0f", k, s.Refused[k]))
				}
				lines = append(lines, fmt.Sprintf("%s run %d refused by the limits: %s; handshake failures %.0f; the CPU budget held the flood's work %.2f s",
					f.Front, i+1, strings.Join(parts, ", "), s.HandshakeFailures, s.BudgetWaited))
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(lines, "\n"))
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(w)
		for _, c := range r.Checks {
			mark := "FAIL"
			switch {
			case c.Skipped:
				mark = "skip"
			case c.Holds:
				mark = "ok"
			}
			fmt.Fprintf(w, "%-4s  %s: %s\n", mark, c.Name, c.Detail)
		}
	}
	return nil
}

// fmtErrorCounts is "kind N, kind N".
func fmtErrorCounts(errs []ErrorCount) string {
	var parts []string
	for _, e := range errs {
		parts = append(parts, fmt.Sprintf("%s %d", e.Kind, e.Count))
	}
	return strings.Join(parts, ", ")
}

// overloadLine is a run's progress line.
func overloadLine(r OverloadRun) string {
	done := "completed"
	if r.Flood.Client == FloodReplay {
		done = "whole flights"
	}
	ctl := ""
	if c := r.Control; c != nil {
		ctl = fmt.Sprintf("; control p99 %s unloaded, %s flooded (%.2fx)", fmtDur(c.Unloaded.Latency.P99), fmtDur(c.Flooded.Latency.P99), c.Ratio)
	}
	return fmt.Sprintf("capacity %.0f/s; p99 %s unloaded, %s flooded (%.2fx)%s; %s flood %.0f/s attempted of %.0f/s asked (%.0f%%), %d %s; front %.2f cores, others %.2f CPUs",
		r.Capacity, fmtDur(r.Unloaded.Latency.P99), fmtDur(r.Flooded.Latency.P99), r.Ratio, ctl, r.Flood.Client, r.Flood.AttemptRate, r.Flood.Rate,
		100*r.Flood.Reached, r.Flood.Succeeded, done, r.FrontCores, r.OtherLoad)
}

// WriteOverloadJSON writes overload.json to dir and returns its path.
func WriteOverloadJSON(dir string, r *OverloadResult) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("failed to make %s: %w", dir, err)
	}
	p := filepath.Join(dir, "overload.json")
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(p, append(data, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("failed to write %s: %w", p, err)
	}
	return p, nil
}
