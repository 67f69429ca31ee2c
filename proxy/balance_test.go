package proxy

import (
	"fmt"
	"net/netip"
	"testing"
)

// fakeSet is an UpstreamSet with fixed usability and loads.
type fakeSet struct {
	addrs    []string
	down     map[int]bool
	inflight []int64
}

func newFakeSet(n int) *fakeSet {
	s := &fakeSet{down: map[int]bool{}, inflight: make([]int64, n)}
	for i := range n {
		s.addrs = append(s.addrs, fmt.Sprintf("10.0.0.%d:8080", i+1))
	}
	return s
}

func (s *fakeSet) Len() int             { return len(s.addrs) }
func (s *fakeSet) Usable(i int) bool    { return !s.down[i] }
func (s *fakeSet) InFlight(i int) int64 { return s.inflight[i] }
func (s *fakeSet) Addr(i int) string    { return s.addrs[i] }

func clientN(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{192, 0, byte(n >> 8), byte(n)})
}

// TestPolicyDistribution checks how each policy spreads 6,000 picks over
// four upstreams, one of them down.
func TestPolicyDistribution(t *testing.T) {
	const picks = 6000
	tests := []struct {
		policy PolicyName
		// load, if set, makes each pick stay in flight (as concurrent
		// requests would), so load-aware policies see it.
		load  bool
		check func(t *testing.T, counts []int)
	}{
		{RoundRobin, false, func(t *testing.T, c []int) {
			for _, i := range []int{0, 2, 3} {
				if c[i] != picks/3 {
					t.Errorf("upstream %d got %d picks, want exactly %d", i, c[i], picks/3)
				}
			}
		}},
		{LeastConn, true, func(t *testing.T, c []int) {
			// Always the least loaded: the loads never differ by more than one.
			for _, i := range []int{0, 2, 3} {
				if c[i] < picks/3-1 || c[i] > picks/3+1 {
					t.Errorf("upstream %d got %d picks, want %d±1", i, c[i], picks/3)
				}
			}
		}},
		{RandomTwo, true, func(t *testing.T, c []int) {
			// Two choices keep the maximum load within a few of the mean.
			for _, i := range []int{0, 2, 3} {
				if c[i] < picks/3-50 || c[i] > picks/3+50 {
					t.Errorf("upstream %d got %d picks, want %d±50", i, c[i], picks/3)
				}
			}
		}},
		{IPHash, false, func(t *testing.T, c []int) {
			// 6,000 distinct clients hash to each live upstream about
			// equally: within 15% of a third.
			for _, i := range []int{0, 2, 3} {
				if c[i] < picks*85/300 || c[i] > picks*115/300 {
					t.Errorf("upstream %d got %d clients, want %d±15%%", i, c[i], picks/3)
				}
			}
		}},
		{First, false, func(t *testing.T, c []int) {
			if c[0] != picks {
				t.Errorf("first usable upstream got %d picks, want all %d (counts %v)", c[0], picks, c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			p, err := ParsePolicy(string(tt.policy))
			if err != nil {
				t.Fatal(err)
			}
			set := newFakeSet(4)
			set.down[1] = true
			counts := make([]int, 4)
			for n := range picks {
				i := p.Pick(set, clientN(n))
				if i < 0 {
					t.Fatal("no pick with three usable upstreams")
				}
				if i == 1 {
					t.Fatal("picked the upstream that is down")
				}
				counts[i]++
				if tt.load {
					set.inflight[i]++
				}
			}
			tt.check(t, counts)
		})
	}
}

func TestPolicyNoneUsable(t *testing.T) {
	for _, name := range PolicyNames() {
		p, _ := ParsePolicy(name)
		set := newFakeSet(3)
		set.down[0], set.down[1], set.down[2] = true, true, true
		if i := p.Pick(set, clientN(1)); i != -1 {
			t.Errorf("%s picked %d with every upstream down, want -1", name, i)
		}
	}
}

// TestIPHashStable checks the consistency promise: a client keeps its
// upstream, and when one upstream leaves only its own clients move (and
// come back when it returns).
func TestIPHashStable(t *testing.T) {
	p, _ := ParsePolicy(string(IPHash))
	set := newFakeSet(5)
	const clients = 2000
	before := make([]int, clients)
	for n := range clients {
		before[n] = p.Pick(set, clientN(n))
		if again := p.Pick(set, clientN(n)); again != before[n] {
			t.Fatalf("client %d moved from %d to %d with nothing changed", n, before[n], again)
		}
	}
	set.down[2] = true
	moved := 0
	for n := range clients {
		after := p.Pick(set, clientN(n))
		switch {
		case before[n] == 2:
			moved++
			if after == 2 {
				t.Fatalf("client %d stayed on the upstream that left", n)
			}
		case after != before[n]:
			t.Errorf("client %d moved from %d to %d although its upstream stayed", n, before[n], after)
		}
	}
	if moved < clients/5-100 || moved > clients/5+100 {
		t.Errorf("%d clients were on the leaving upstream, want about a fifth of %d", moved, clients)
	}
	set.down[2] = false
	for n := range clients {
		if got := p.Pick(set, clientN(n)); got != before[n] {
			t.Fatalf("client %d did not come back to %d after it returned (got %d)", n, before[n], got)
		}
	}
}

// TestLeastConnPrefersIdle checks that a loaded upstream gets nothing while
// an idle one is usable.
func TestLeastConnPrefersIdle(t *testing.T) {
	for _, name := range []PolicyName{LeastConn, RandomTwo} {
		p, _ := ParsePolicy(string(name))
		set := newFakeSet(2)
		set.inflight[0] = 100
		for range 50 {
			if i := p.Pick(set, clientN(1)); i != 1 {
				t.Fatalf("%s picked the upstream with 100 in flight over an idle one", name)
			}
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tt := range []struct {
		name    string
		wantErr bool
	}{
		{"", false}, {"round_robin", false}, {"least_conn", false}, {"random_two", false},
		{"ip_hash", false}, {"first", false}, {"Round_Robin", true}, {"weighted", true},
	} {
		_, err := ParsePolicy(tt.name)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParsePolicy(%q) error %v, want error %v", tt.name, err, tt.wantErr)
		}
	}
}
