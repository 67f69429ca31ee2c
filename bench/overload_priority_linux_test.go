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
