package freeport

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// TestPortsNeverRepeat: ports asked for one after another, each released at
// once, never repeat in a process, even though the kernel may hand a
// released port out again (the CI failure behind this package: a listener
// and admin.listen given the same port).
func TestPortsNeverRepeat(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		port := Must(t)
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
}

// TestPortIsBindable: a port from Port can be bound for TCP and for UDP.
func TestPortIsBindable(t *testing.T) {
	addr := MustAddr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP on %s: %v", addr, err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("UDP on %s: %v", addr, err)
	}
	pc.Close()
}

// TestTakeSkipsRepeats: the pool skips what the probe offers again and
// says why when it finds nothing new, with the probe's own failure kept.
func TestTakeSkipsRepeats(t *testing.T) {
	tests := []struct {
		name    string
		offers  []int // what the probe returns, in turn; 0 is a probe error
		want    []int // ports taken, in turn
		wantErr string
	}{
		{name: "fresh ports", offers: []int{4001, 4002}, want: []int{4001, 4002}},
		{name: "a repeat is skipped", offers: []int{4001, 4001, 4002}, want: []int{4001, 4002}},
		{name: "a failed probe is retried", offers: []int{0, 4001}, want: []int{4001}},
		{name: "only repeats", offers: []int{4001}, want: []int{4001}, wantErr: "port 4001 was handed out before"},
		{name: "only failures", offers: nil, wantErr: "no port: probe failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := 0
			p := &pool{given: map[int]bool{}, probe: func() (int, error) {
				if len(tt.offers) == 0 {
					return 0, errors.New("no port: probe failed")
				}
				offer := tt.offers[min(next, len(tt.offers)-1)]
				next++
				if offer == 0 {
					return 0, errors.New("no port: probe failed")
				}
				return offer, nil
			}}
			for _, want := range tt.want {
				got, err := p.take()
				if err != nil || got != want {
					t.Fatalf("take() = %d, %v; want %d", got, err, want)
				}
			}
			if tt.wantErr == "" {
				return
			}
			got, err := p.take()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "64 tries") {
				t.Fatalf("take() after the offers = %d, %v; want an error naming the tries and %q", got, err, tt.wantErr)
			}
		})
	}
}
