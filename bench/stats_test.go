package bench

import (
	"math"
	"os"
	"testing"
	"time"
)

func pidSelf() int { return os.Getpid() }

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99.9, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"median of even is the lower", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p90 of ten", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"p99 of ten is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p100", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"p0 is the min", ms(1, 2, 3), 0, time.Millisecond},
		{"p99.9 of 1000 (no float rounding up)", thousand, 99.9, 999 * time.Millisecond},
		{"p99 of 1000", thousand, 99, 990 * time.Millisecond},
		{"p50 of 1000", thousand, 50, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestSpread(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   float64
	}{
		{"one run", []float64{5}, 0},
		{"equal", []float64{4, 4, 4}, 0},
		{"ten percent", []float64{100, 95, 105}, 0.10},
		{"even count median", []float64{1, 2, 3, 4}, 3.0 / 2.5},
		{"zero median", []float64{0, 0, 1}, math.Inf(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Spread(tt.values); math.Abs(got-tt.want) > 1e-12 && got != tt.want {
				t.Errorf("Spread(%v) = %v, want %v", tt.values, got, tt.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    procStat
		wantErr bool
	}{
		{"plain", "1234 (nginx) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 0 0",
			procStat{ppid: 1, utime: 250, stime: 75}, false},
		{"name with spaces and parens", "99 (a (b) c) R 42 99 99 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0",
			procStat{ppid: 42, utime: 3, stime: 4}, false},
		{"truncated", "99 (x) R 42 99", procStat{}, true},
		{"no name", "99 x R", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.line))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStat = %+v, %v; want %+v, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestClockTicksAndSelfCPU(t *testing.T) {
	if hz := ClockTicks(); hz <= 0 || hz > 10000 {
		t.Errorf("ClockTicks = %d", hz)
	}
	if _, err := TreeCPU(pidSelf()); err != nil {
		t.Error(err)
	}
}

func TestParseMachineBusy(t *testing.T) {
	hz := time.Second / time.Duration(ClockTicks())
	tests := []struct {
		name    string
		data    string
		want    time.Duration
		wantErr bool
	}{
		{"idle and iowait skipped", "cpu  100 2 30 5000 40 1 6 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n", (100 + 2 + 30 + 1 + 6 + 7) * hz, false},
		{"old kernel without guest columns", "cpu 1 1 1 1 1 1 1 1\n", 6 * hz, false},
		{"per-CPU line first", "cpu0 1 2 3 4 5 6 7 8\n", 0, true},
		{"too few fields", "cpu 1 2 3\n", 0, true},
		{"not a number", "cpu 1 x 3 4 5 6 7 8\n", 0, true},
		{"not at the start of the file", " cpu 0 0 0 0 0 0 0 0\n", 0, true},
		{"a negative counter", "cpu 1 -2 3 4 5 6 7 8\n", 0, true},
		{"counters too large to add", "cpu 9223372036854775807 9223372036854775807 1 1 1 1 1 1\n", 0, true},
		// 64 CPUs busy for a year at 100 Hz: 2e11 ticks, whose nanoseconds
		// overflow an int64 if multiplied first.
		{"a large many-core machine", "cpu 201830400000 0 0 0 0 0 0 0\n", 201830400000 * hz, false},
		{"beyond what a duration holds", "cpu 576460752303423487 0 0 0 0 0 0 0\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMachineBusy([]byte(tt.data))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseMachineBusy = %v, %v; want %v, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
