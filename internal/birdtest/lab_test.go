//go:build linux

package birdtest

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestLab checks the harness itself: an address added to the watched
// interface of each edge reaches the router from that edge, and leaves it
// when deleted. (The veth here stands in for pqedge's TUN device; package
// anycast tests the real one.)
func TestLab(t *testing.T) {
	l := Start(t, Options{Interface: "announce0", Edges: 2})
	p4 := netip.MustParsePrefix("192.0.2.53/32")
	p6 := netip.MustParsePrefix("2001:db8::53/128")
	for _, e := range l.Edges {
		e.NS.IP(t, "link", "add", "announce0", "type", "veth", "peer", "name", "announce1")
		e.NS.IP(t, "link", "set", "announce0", "up")
		e.NS.IP(t, "addr", "add", p4.String(), "dev", "announce0")
		e.NS.IP(t, "addr", "add", p6.String(), "dev", "announce0", "nodad")
	}
	l.WaitRoute(t, p4, true, 5*time.Second)
	l.WaitRoute(t, p6, true, 5*time.Second)
	// Both families from both edges before anything is deleted: the
	// check below that IPv6 kept its two routes otherwise raced the
	// second edge's IPv6 session (it failed once in CI with one route).
	for _, p := range []netip.Prefix{p4, p6} {
		err := poll(5*time.Second, func() error {
			rs, err := l.Learned(context.Background(), p)
			if err != nil || len(rs) == 2 {
				return err
			}
			return fmt.Errorf("want a route for %s from each edge, got %+v", p, rs)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	rs, _ := l.Learned(context.Background(), p4)
	primaries := 0
	for i, r := range rs {
		if r.Primary {
			primaries++
		}
		if len(r.NextHops) != 1 || !strings.HasPrefix(r.Protocol, "edge") {
			t.Errorf("route %d = %+v, want one next hop learned over an edge session", i, r)
		}
	}
	if primaries != 1 || rs[0].NextHops[0].Via == rs[1].NextHops[0].Via {
		t.Errorf("routes %+v: want one primary and two distinct next hops", rs)
	}

	for _, e := range l.Edges {
		e.NS.IP(t, "addr", "del", p4.String(), "dev", "announce0")
	}
	l.WaitRoute(t, p4, false, 5*time.Second)
	if rs, err := l.Learned(context.Background(), p6); err != nil || len(rs) != 2 {
		t.Errorf("deleting the IPv4 address touched IPv6: %+v, %v", rs, err)
	}
}

// TestNetNSCleanup checks that a namespace and the processes in it are gone
// once its test ends, as every harness user relies on.
func TestNetNSCleanup(t *testing.T) {
	var name string
	exited := make(chan error, 1)
	t.Run("inner", func(t *testing.T) {
		n := NewNetNS(t, "cleanup")
		name = n.Name
		cmd := n.Command(context.Background(), "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { exited <- cmd.Wait() }()
	})
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Errorf("a process in the namespace outlived its test")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if strings.Contains(string(out), name) {
		t.Errorf("namespace %s is still there after its test:\n%s", name, out)
	}
}

// TestSweepStale checks that the namespaces of a dead test binary are
// removed and those of a live one are kept.
func TestSweepStale(t *testing.T) {
	RequireNetNS(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d-1-stale", nsPrefix, dead.Process.Pid)
	live := fmt.Sprintf("%s1-1-live", nsPrefix) // PID 1 never dies
	for _, name := range []string{stale, live} {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	}
	sweepStale()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if strings.Contains(string(out), stale) {
		t.Errorf("the dead binary's namespace %s survived the sweep", stale)
	}
	if !strings.Contains(string(out), live) {
		t.Errorf("the sweep removed %s, whose binary lives", live)
	}
}

// TestLabInstall: with Install the router's kernel table follows BIRD's
// best route, so a client in the router namespace reaches the edge.
func TestLabInstall(t *testing.T) {
	l := Start(t, Options{Interface: "announce0", Install: true})
	p4 := netip.MustParsePrefix("192.0.2.53/32")
	e := l.Edges[0]
	e.NS.IP(t, "link", "add", "announce0", "type", "veth", "peer", "name", "announce1")
	e.NS.IP(t, "link", "set", "announce0", "up")
	e.NS.IP(t, "addr", "add", p4.String(), "dev", "announce0")
	kernelRoute := func() (string, error) {
		out, err := exec.Command("ip", "-n", l.Router.NS.Name, "route", "show", p4.String()).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	err := poll(5*time.Second, func() error {
		out, err := kernelRoute()
		if err == nil && !strings.Contains(out, "via "+e.Addr4.String()) {
			err = fmt.Errorf("router's kernel route to %s: %q", p4, out)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.NS.IP(t, "addr", "del", p4.String(), "dev", "announce0")
	err = poll(5*time.Second, func() error {
		out, err := kernelRoute()
		if err == nil && out != "" {
			err = fmt.Errorf("router's kernel still routes %s: %q", p4, out)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
