package server

import (
	"runtime"
	"sync"
	"testing"
)

// stackPerGoroutine is the stack memory each of n goroutines holds while
// blocked after running f from its top frame.
func stackPerGoroutine(n int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	release := make(chan struct{})
	var started, done sync.WaitGroup
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			f()
			started.Done()
			<-release
		}()
	}
	started.Wait()
	runtime.ReadMemStats(&after)
	close(release)
	done.Wait()
	if after.StackInuse < before.StackInuse {
		return 0
	}
	return (after.StackInuse - before.StackInuse) / uint64(n)
}

// The reserves grow a goroutine's stack to their size and not to the
// next power of two: an idle keep-alive connection keeps the stack its
// request grew, so an overshoot would be memory held by every connection.
func TestReserveStackSizes(t *testing.T) {
	const n = 256
	base := stackPerGoroutine(n, func() {})
	tests := []struct {
		name    string
		reserve func(int) byte
		want    uint64
	}{
		{name: "request", reserve: reserveRequestStack, want: requestStack},
		{name: "handshake", reserve: reserveHandshakeStack, want: handshakeStack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if base >= tt.want {
				t.Skipf("goroutines start with %d B of stack here, at least the %d B reserve", base, tt.want)
			}
			got := stackPerGoroutine(n, func() { tt.reserve(0) })
			if got < tt.want*3/4 || got > tt.want*5/4 {
				t.Errorf("%d B of stack per goroutine after the reserve, want about %d B (%d B without it)", got, tt.want, base)
			}
		})
	}
}
