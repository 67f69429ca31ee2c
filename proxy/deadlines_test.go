package proxy

import (
	"testing"
	"time"
)

// TestIdleDeadline: a deadline that follows the I/O is set at the first
// read or write, kept while it is fresh, and moved once timeout/16 of it
// has passed, so a stall always has between 15/16 of the timeout and all
// of it.
func TestIdleDeadline(t *testing.T) {
	const timeout = 16 * time.Second
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var d idleDeadline
	for _, step := range []struct {
		at   time.Duration // since t0
		set  bool
		want time.Duration // the deadline in force afterwards, since t0
	}{
		{0, true, 16 * time.Second},
		{500 * time.Millisecond, false, 16 * time.Second},
		{time.Second, false, 16 * time.Second}, // exactly timeout/16 old: kept
		{time.Second + time.Nanosecond, true, 17*time.Second + time.Nanosecond},
		{10 * time.Second, true, 26 * time.Second},
		{40 * time.Second, true, 56 * time.Second}, // long after it passed
	} {
		now := t0.Add(step.at)
		dl, set := d.next(now, timeout)
		if set != step.set {
			t.Fatalf("at +%v: set = %v, want %v", step.at, set, step.set)
		}
		if set && !dl.Equal(d.until) {
			t.Fatalf("at +%v: returned %v, but keeps %v", step.at, dl, d.until)
		}
		if got := d.until.Sub(t0); got != step.want {
			t.Fatalf("at +%v: deadline +%v, want +%v", step.at, got, step.want)
		}
		if left := d.until.Sub(now); left < timeout-timeout/slackDivisor || left > timeout {
			t.Fatalf("at +%v: %v left for the next I/O, want %v to %v", step.at, left, timeout-timeout/slackDivisor, timeout)
		}
	}
}
