package bench

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFloodPriority: the flood runs below a real-time harness without
// joining its class, and in SCHED_IDLE below any other.
func TestFloodPriority(t *testing.T) {
	tests := []struct {
		name   string
		policy int
		want   []string
	}{
		{"round-robin harness", unix.SCHED_RR, []string{"chrt", "--other", "0", "nice", "-n", "-10"}},
		{"FIFO harness", unix.SCHED_FIFO, []string{"chrt", "--other", "0", "nice", "-n", "-10"}},
		{"normal harness", unix.SCHED_NORMAL, []string{"chrt", "--idle", "0"}},
		{"batch harness", unix.SCHED_BATCH, []string{"chrt", "--idle", "0"}},
		{"policy unknown", -1, []string{"chrt", "--idle", "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := floodPriorityFor(tt.policy); !slices.Equal(got, tt.want) {
				t.Errorf("floodPriorityFor(%d) = %q, want %q", tt.policy, got, tt.want)
			}
		})
	}
}

// TestFrontPolicy: under a real-time harness the front leaves the
// real-time class for SCHED_OTHER at nice -10; otherwise it stays as
// started.
func TestFrontPolicy(t *testing.T) {
	tests := []struct {
		name       string
		policy     int
		wantNormal bool
		wantNice   int
	}{
		{"round-robin harness", unix.SCHED_RR, true, -10},
		{"FIFO harness", unix.SCHED_FIFO, true, -10},
		{"normal harness", unix.SCHED_NORMAL, false, 0},
		{"policy unknown", -1, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			normal, nice := frontPolicyFor(tt.policy)
			if normal != tt.wantNormal || nice != tt.wantNice {
				t.Errorf("frontPolicyFor(%d) = %v, %d; want %v, %d", tt.policy, normal, nice, tt.wantNormal, tt.wantNice)
			}
		})
	}
}
