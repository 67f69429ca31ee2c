package bench

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHarnessPolicyChoices: under a real-time harness the flood runs at
// nice -10 outside the real-time class and the front leaves it for
// SCHED_OTHER at nice -10; under any other harness the flood runs in
// SCHED_IDLE and the front stays as started.
func TestHarnessPolicyChoices(t *testing.T) {
	belowRT := []string{"chrt", "--other", "0", "nice", "-n", "-10"}
	idle := []string{"chrt", "--idle", "0"}
	tests := []struct {
		name       string
		policy     int
		wantFlood  []string
		wantNormal bool
		wantNice   int
	}{
		{"round-robin harness", unix.SCHED_RR, belowRT, true, -10},
		{"FIFO harness", unix.SCHED_FIFO, belowRT, true, -10},
		{"normal harness", unix.SCHED_NORMAL, idle, false, 0},
		{"batch harness", unix.SCHED_BATCH, idle, false, 0},
		{"policy unknown", -1, idle, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := floodPriorityFor(tt.policy); !slices.Equal(got, tt.wantFlood) {
				t.Errorf("floodPriorityFor(%d) = %q, want %q", tt.policy, got, tt.wantFlood)
			}
			if normal, nice := frontPolicyFor(tt.policy); normal != tt.wantNormal || nice != tt.wantNice {
				t.Errorf("frontPolicyFor(%d) = %v, %d; want %v, %d", tt.policy, normal, nice, tt.wantNormal, tt.wantNice)
			}
		})
	}
}
