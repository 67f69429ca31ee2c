package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// summarizeCell sets a cell's numbers to the median over its runs. A cell
// with an error keeps none.
func summarizeCell(c *ProxyCell) {
	if c.Error != "" || len(c.Runs) == 0 {
		return
	}
	med := func(f func(r ProxyRun) float64) float64 {
		v := make([]float64, len(c.Runs))
		for i, r := range c.Runs {
			v[i] = f(r)
		}
		return Median(v)
	}
	if isMemoryMode(c.Mode) {
		perConn := func(f func(r ProxyRun) int64) func(ProxyRun) float64 {
			return func(r ProxyRun) float64 { return float64(f(r)) / float64(max(1, r.Conns)) }
		}
		rss := make([]float64, len(c.Runs))
		for i, r := range c.Runs {
			rss[i] = perConn(func(r ProxyRun) int64 { return r.RSSDelta })(r)
		}
		c.Conns = c.Runs[0].Conns
		c.RSSPerConn = Median(rss)
		c.Spread = cellSpread(rss)
		c.RSS = int64(med(func(r ProxyRun) float64 { return float64(r.RSS) }))
		if c.GoRuntime {
			c.HeapPerConn = med(perConn(func(r ProxyRun) int64 { return r.HeapDelta }))
			c.StackPerConn = med(perConn(func(r ProxyRun) int64 { return r.StackDelta }))
			c.GoroutinesPerConn = med(perConn(func(r ProxyRun) int64 { return r.GoroutineAdd }))
		}
		c.Noisy = c.Spread > SpreadLimit
		return
	}
	cpu := make([]float64, len(c.Runs))
	for i, r := range c.Runs {
		cpu[i] = float64(r.FrontCPU)
	}
	c.FrontCPU = time.Duration(Median(cpu))
	c.Spread = cellSpread(cpu)
	c.Noisy = c.Spread > SpreadLimit
	c.Rate = med(func(r ProxyRun) float64 { return r.Rate })
	c.FrontCores = med(func(r ProxyRun) float64 { return r.FrontCores })
	c.LoadCPU = time.Duration(med(func(r ProxyRun) float64 { return float64(r.LoadCPU) }))
	c.LoadCores = med(func(r ProxyRun) float64 { return r.LoadCores })
	c.OtherLoad = med(func(r ProxyRun) float64 { return r.OtherLoad })
	c.P50 = time.Duration(med(func(r ProxyRun) float64 { return float64(r.Latency.P50) }))
	c.P90 = time.Duration(med(func(r ProxyRun) float64 { return float64(r.Latency.P90) }))
	c.P99 = time.Duration(med(func(r ProxyRun) float64 { return float64(r.Latency.P99) }))
	c.RSS = int64(med(func(r ProxyRun) float64 { return float64(r.RSS) }))
	c.UpstreamPer1k = med(func(r ProxyRun) float64 { return 1000 * float64(r.UpstreamConns) / max(1, r.Units) })
	if c.GoRuntime {
		c.AllocsPerUnit = med(func(r ProxyRun) float64 { return float64(r.Mallocs) / max(1, r.Units) })
		c.AllocBytesPerUnit = med(func(r ProxyRun) float64 { return float64(r.AllocBytes) / max(1, r.Units) })
	}
}

// cellSpread is Spread, finite: runs that all measured 0 (nginx's memory
// per pre-handshake connection) agree, and runs around a median of 0 that
// do not count as 100% apart. JSON has no infinity.
func cellSpread(values []float64) float64 {
	s := Spread(values)
	if !math.IsInf(s, 0) {
		return s
	}
	if slices.Min(values) == slices.Max(values) {
		return 0
	}
	return 1
}

// Targets of issue 13 that ProxyChecks judges.
const (
	targetFloorRatio     = 1.0  // pqedge CPU per request / the Go floor's
	targetNginxRatioH1   = 2.5  // stretch: pqedge / nginx, HTTP/1.1
	targetNginxRatioH2   = 3.0  // stretch: pqedge / nginx, HTTP/2
	targetHandshakeRatio = 1.05 // pqedge / floor, handshake modes
	targetIdleTLS        = 20 << 10
	targetPreHandshake   = 8 << 10
)

// ProxyChecks judges issue 13's targets on a result; a target without the
// cells to judge it is skipped.
func ProxyChecks(r *ProxyResult) []Check {
	find := func(front, mode string) *ProxyCell {
		for i := range r.Cells {
			c := &r.Cells[i]
			if c.Front == front && c.Mode == mode && c.Error == "" {
				return c
			}
		}
		return nil
	}
	ratio := func(name string, modes []string, other string, limit func(mode string) float64) Check {
		ch := Check{Name: name, Holds: true, Skipped: true}
		var parts []string
		for _, mode := range modes {
			a, b := find(ServerPQEdge, mode), find(other, mode)
			if a == nil || b == nil || b.FrontCPU == 0 {
				continue
			}
			ch.Skipped = false
			x := float64(a.FrontCPU) / float64(b.FrontCPU)
			ch.Holds = ch.Holds && x <= limit(mode)
			parts = append(parts, fmt.Sprintf("%s %.2fx (%s vs %s)", mode, x, fmtDur(a.FrontCPU), fmtDur(b.FrontCPU)))
		}
		ch.Detail = strings.Join(parts, ", ")
		return ch
	}
	memory := func(name string, modes []string, limit float64) Check {
		ch := Check{Name: name, Holds: true, Skipped: true}
		var parts []string
		for _, mode := range modes {
			if c := find(ServerPQEdge, mode); c != nil {
				ch.Skipped = false
				ch.Holds = ch.Holds && c.RSSPerConn <= limit
				parts = append(parts, fmt.Sprintf("%s %s per connection", mode, fmtKiB(c.RSSPerConn)))
			}
		}
		ch.Detail = strings.Join(parts, ", ")
		return ch
	}
	out := []Check{
		ratio("pqedge CPU per request <= 1.0x the Go floor", []string{ModeH1, ModeH2}, ServerPlain,
			func(string) float64 { return targetFloorRatio }),
		ratio("pqedge CPU per request <= 2.5x nginx (HTTP/1.1), 3x (HTTP/2)", []string{ModeH1, ModeH2}, ServerNginx,
			func(m string) float64 {
				if m == ModeH1 {
					return targetNginxRatioH1
				}
				return targetNginxRatioH2
			}),
		ratio("pqedge CPU per connection <= 1.05x the Go floor (handshake, one request, close)", []string{ModeHandshake, ModeHandshakeH2}, ServerPlain,
			func(string) float64 { return targetHandshakeRatio }),
		memory("pqedge idle TLS connection <= 20 KiB", []string{ModeIdle, ModeIdleH2}, targetIdleTLS),
		memory("pqedge pre-handshake connection <= 8 KiB", []string{ModePreHandshake}, targetPreHandshake),
	}
	out = append(out, quietCheck(r))
	spread := Check{Name: fmt.Sprintf("repeated runs agree within %.0f%%", 100*SpreadLimit), Holds: true, Skipped: true}
	var noisy []string
	measured := 0
	for _, c := range r.Cells {
		if c.Error != "" || len(c.Runs) < 2 {
			continue
		}
		measured++
		spread.Skipped = false
		if c.Noisy {
			spread.Holds = false
			noisy = append(noisy, fmt.Sprintf("%s/%s %.0f%%", c.Front, c.Mode, 100*c.Spread))
		}
	}
	spread.Detail = fmt.Sprintf("%d of %d cells over the limit", len(noisy), measured)
	if len(noisy) > 0 {
		spread.Detail += ": " + strings.Join(noisy, ", ")
	}
	return append(out, spread)
}

// quietLimit is the most CPUs other processes may keep busy, as a median
// over a result's load runs, for its CPU numbers to be taken at face value:
// above it the front shares its core and its CPU per unit rises with the
// cache and scheduler noise.
const quietLimit = 0.25

// quietCheck says whether the machine was quiet during the load runs.
func quietCheck(r *ProxyResult) Check {
	ch := Check{Name: fmt.Sprintf("the machine was quiet: other processes kept at most %.2f CPUs busy (median over runs)", quietLimit), Skipped: true}
	var other []float64
	for _, c := range r.Cells {
		for _, run := range c.Runs {
			if !isMemoryMode(c.Mode) {
				other = append(other, run.OtherLoad)
			}
		}
	}
	if len(other) > 0 {
		m := Median(other)
		ch.Skipped, ch.Holds = false, m <= quietLimit
		ch.Detail = fmt.Sprintf("%.2f CPUs (from %.2f to %.2f over %d runs)", m, slices.Min(other), slices.Max(other), len(other))
	}
	return ch
}

// fmtKiB prints bytes as KiB with one decimal.
func fmtKiB(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// fmtMiB prints bytes as MiB with one decimal.
func fmtMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
