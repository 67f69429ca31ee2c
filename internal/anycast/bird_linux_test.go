package anycast

import (
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/birdtest"
)

// These tests run real BIRD 2 (package birdtest): an edge whose BIRD
// announces the addresses on pqedge-any0, and a router whose table is what
// the network learns. The 1 s bounds are the promise to operators (BIRD
// itself takes some 40 ms here); they are generous for a loaded machine.
const convergence = time.Second

// TestBIRDAnnounceWithdraw drives a Controller over a real Device and
// checks the router learns and drops each prefix.
func TestBIRDAnnounceWithdraw(t *testing.T) {
	lab := birdtest.Start(t, birdtest.Options{Interface: "pqedge-any0"})
	edge := lab.Edges[0].NS
	dev, err := openIn(t, edge, "pqedge-any0")
	if err != nil {
		t.Fatalf("OpenDevice: %v", err)
	}
	var (
		mu  sync.Mutex
		log []Transition
	)
	c := NewController(dev, Options{OnTransition: func(tr Transition) {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, tr)
	}})
	t.Cleanup(c.Close)
	pol := Policy{Rise: 1, Fall: 1, Interval: 100 * time.Millisecond}
	if err := c.Configure([]Announcement{{svc4, pol}, {svc6, pol}}); err != nil {
		t.Fatal(err)
	}

	for _, p := range []netip.Prefix{svc4, svc6} {
		t.Run(p.String(), func(t *testing.T) {
			if err := c.Update(p, true, "ready"); err != nil {
				t.Fatal(err)
			}
			t.Logf("announced: the router learned %s in %v", p, lab.WaitRoute(t, p, true, convergence))
			if err := c.Update(p, false, "pool down"); err != nil {
				t.Fatal(err)
			}
			t.Logf("withdrawn: the router dropped %s in %v", p, lab.WaitRoute(t, p, false, convergence))
		})
	}

	// A lame-duck shutdown: everything announced goes at once.
	for _, p := range []netip.Prefix{svc4, svc6} {
		c.Update(p, true, "ready again")
	}
	lab.WaitRoute(t, svc4, true, convergence)
	lab.WaitRoute(t, svc6, true, convergence)
	if err := c.WithdrawAll("SIGTERM"); err != nil {
		t.Fatal(err)
	}
	lab.WaitRoute(t, svc4, false, convergence)
	lab.WaitRoute(t, svc6, false, convergence)

	mu.Lock()
	defer mu.Unlock()
	if len(log) != 8 {
		t.Errorf("%d transitions, want 8 (two announce/withdraw pairs per prefix): %+v", len(log), log)
	}
	for _, tr := range log {
		if tr.Err != nil {
			t.Errorf("transition %+v failed", tr)
		}
	}
}

// TestBIRDDeadMan kills the process holding the device with SIGKILL and
// checks the router drops its prefixes.
func TestBIRDDeadMan(t *testing.T) {
	lab := birdtest.Start(t, birdtest.Options{Interface: "pqedge-any0"})
	edge := lab.Edges[0].NS
	holder := startHolder(t, edge, "pqedge-any0", svc4, svc6)
	lab.WaitRoute(t, svc4, true, 5*time.Second)
	lab.WaitRoute(t, svc6, true, 5*time.Second)

	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9: the router dropped %s in %v", svc4, lab.WaitRoute(t, svc4, false, convergence))
	lab.WaitRoute(t, svc6, false, convergence)
	waitGone(t, edge, "pqedge-any0", convergence)
}
