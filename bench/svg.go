package bench

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
)

// chartPalette colors the series (servers and signers) of the chart.
var chartPalette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"}

// chartData is the matrix arranged for the chart: one group of bars per
// combination (group x key), one bar per series (server, and the signer
// when it is not the server's usual one).
type chartData struct {
	combos []string
	series []string
	cpu    map[[2]string]float64 // µs per handshake
	flight map[[2]string]float64 // bytes
}

func arrangeChart(r *MatrixResult) chartData {
	d := chartData{cpu: map[[2]string]float64{}, flight: map[[2]string]float64{}}
	for _, c := range r.Cells {
		if c.Error != "" {
			continue
		}
		key := c.Cert
		if a, err := ParseCertAlg(c.Cert); err == nil {
			key = a.KeyName()
		}
		combo := c.Group + " " + key
		series := c.Server
		if c.Transport == TransportQUIC {
			series += " over QUIC"
		}
		if c.Signer == "stdlib" {
			series += " (stdlib ML-DSA)"
		}
		if !slices.Contains(d.combos, combo) {
			d.combos = append(d.combos, combo)
		}
		if !slices.Contains(d.series, series) {
			d.series = append(d.series, series)
		}
		d.cpu[[2]string{combo, series}] = float64(c.ServerCPU) / 1e3
		d.flight[[2]string{combo, series}] = float64(c.ServerFlightBytes)
	}
	return d
}

// WriteSVG draws two panels of grouped bars, server CPU per handshake and
// the server's first flight in bytes (with the initial congestion window
// marked), as a self-contained SVG: no fonts, scripts or images to fetch.
func WriteSVG(w io.Writer, r *MatrixResult) error {
	d := arrangeChart(r)
	const (
		left, right, top = 120, 20, 50
		panelH, labelH   = 260, 150
		barW, gap        = 7, 10
	)
	groupW := max(1, len(d.series))*barW + gap
	// Wide enough for the title and legend; rotated labels reach about
	// 100px left of their bar, hence the left margin.
	width := max(760, left+right+max(1, len(d.combos))*groupW+180)
	height := top + 2*(panelH+labelH) + 20
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%d" y="20" font-size="14" font-weight="bold">pqedge bench matrix: %s, %d runs of %s</text>`+"\n", left, esc(r.Date.Format("2006-01-02")), r.Runs, r.Duration)
	p(`<text x="%d" y="36">%s, %d CPUs; bars are medians over runs</text>`+"\n", left, esc(r.Machine), r.CPUs)

	panel := func(y0 int, title, unit string, values map[[2]string]float64, line float64, lineLabel string) {
		maxV := line
		for _, v := range values {
			maxV = max(maxV, v)
		}
		maxV = niceCeil(maxV)
		scale := float64(panelH-20) / maxV
		base := y0 + panelH
		p(`<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", left, y0+4, esc(title))
		for i := 0; i <= 4; i++ {
			v := maxV * float64(i) / 4
			y := float64(base) - v*scale
			p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, width-right-180, y)
			p(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-5, y+4, esc(fmt.Sprintf("%.0f %s", v, unit)))
		}
		for ci, combo := range d.combos {
			x0 := left + ci*groupW + gap/2
			for si, s := range d.series {
				v, ok := values[[2]string{combo, s}]
				if !ok {
					continue
				}
				h := v * scale
				p(`<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
					x0+si*barW, float64(base)-h, barW-1, h, chartPalette[si%len(chartPalette)], esc(fmt.Sprintf("%s, %s: %.0f %s", combo, s, v, unit)))
			}
			lx := x0 + len(d.series)*barW/2
			p(`<text x="%d" y="%d" text-anchor="end" transform="rotate(-45 %d %d)">%s</text>`+"\n", lx, base+12, lx, base+12, esc(combo))
		}
		if line > 0 {
			y := float64(base) - line*scale
			p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black" stroke-dasharray="4 3"/>`+"\n", left, y, width-right-180, y)
			p(`<text x="%d" y="%.1f">%s</text>`+"\n", width-right-176, y+4, esc(lineLabel))
		}
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, base, width-right-180, base)
	}
	panel(top+10, "Server CPU per handshake (from /proc)", "µs", d.cpu, 0, "")
	initcwnd := float64(r.Network.InitCwnd * r.Network.MSS)
	panel(top+10+panelH+labelH, "Server first flight on the wire (TLS records)", "B", d.flight, initcwnd,
		fmt.Sprintf("initcwnd %d x %d B", r.Network.InitCwnd, r.Network.MSS))

	for si, s := range d.series {
		y := top + 30 + si*16
		x := width - right - 170
		p(`<rect x="%d" y="%d" width="10" height="10" fill="%s"/>`+"\n", x, y, chartPalette[si%len(chartPalette)])
		p(`<text x="%d" y="%d">%s</text>`+"\n", x+14, y+9, esc(s))
	}
	p("</svg>\n")
	return bw.Flush()
}

func esc(s string) string { return html.EscapeString(s) }

// niceCeil rounds v up to a round number (a few steps per power of ten)
// so that the four axis ticks are round too.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10} { // divisible by 4 ticks
		if v <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}
