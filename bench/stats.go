package bench

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample such that at least p percent of
// the samples are at or below it. It never interpolates, so every reported
// latency is one a handshake actually had. An empty slice gives 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	// Float error: 99.9/100*1000 is 999.0000000000001, which would round
	// the rank up past the sample it names.
	if r := p / 100 * float64(n); math.Abs(r-math.Round(r)) < 1e-9 {
		rank = int(math.Round(r))
	}
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// Latency is the distribution of handshake latencies of a run.
type Latency struct {
	Min, P50, P90, P99, P999, Max time.Duration
	Mean                          time.Duration
}

// summarize sorts samples in place and computes their distribution.
func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	return Latency{
		Min:  samples[0],
		P50:  Percentile(samples, 50),
		P90:  Percentile(samples, 90),
		P99:  Percentile(samples, 99),
		P999: Percentile(samples, 99.9),
		Max:  samples[len(samples)-1],
		Mean: sum / time.Duration(len(samples)),
	}
}

// Spread is (max-min)/median of repeated measurements: how far repeated
// runs of one cell disagree, relative to their typical value. It is 0 for
// fewer than two values and +Inf when the median is 0.
func Spread(values []float64) float64 {
	if len(values) < 2 {
		return 0
	}
	v := slices.Clone(values)
	slices.Sort(v)
	med := median(v)
	if med == 0 {
		return math.Inf(1)
	}
	return (v[len(v)-1] - v[0]) / med
}

// median of sorted values; the mean of the middle two for an even count.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Median returns the median of values (which it does not modify).
func Median(values []float64) float64 {
	v := slices.Clone(values)
	slices.Sort(v)
	return median(v)
}
