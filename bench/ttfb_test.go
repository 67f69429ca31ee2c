package bench

import (
	"testing"
	"time"
)

func TestModelTTFB(t *testing.T) {
	tests := []struct {
		name   string
		net    Network
		flight int
		cpu    time.Duration
		extra  int
		want   time.Duration
	}{
		{"classical flight", DefaultNetwork, 2300, 400 * time.Microsecond, 0, 50*time.Millisecond + 400*time.Microsecond},
		{"exactly the window", DefaultNetwork, 14600, 0, 0, 50 * time.Millisecond},
		{"one byte over", DefaultNetwork, 14601, 0, 1, 100 * time.Millisecond},
		{"ML-DSA-87 chain", DefaultNetwork, 19500, time.Millisecond, 1, 101 * time.Millisecond},
		{"fills 10+20 segments", DefaultNetwork, 30 * 1460, 0, 1, 100 * time.Millisecond},
		{"needs the third round", DefaultNetwork, 30*1460 + 1, 0, 2, 150 * time.Millisecond},
		{"small window", Network{RTT: 10 * time.Millisecond, InitCwnd: 4, MSS: 1000}, 13000, 0, 2, 30 * time.Millisecond},
		{"window of one", Network{RTT: time.Millisecond, InitCwnd: 1, MSS: 1000}, 8000, 0, 3, 4 * time.Millisecond},
		{"empty flight", DefaultNetwork, 0, 0, 0, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.net.ExtraRoundTrips(tt.flight); got != tt.extra {
				t.Errorf("ExtraRoundTrips(%d) = %d, want %d", tt.flight, got, tt.extra)
			}
			if got := tt.net.ModelTTFB(tt.flight, tt.cpu); got != tt.want {
				t.Errorf("ModelTTFB(%d, %v) = %v, want %v", tt.flight, tt.cpu, got, tt.want)
			}
		})
	}
}
