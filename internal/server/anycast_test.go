package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/config"
)

// fakeDevice stands in for the TUN device, which needs CAP_NET_ADMIN: it
// records what is announced and what was put on lo. The real device is
// exercised with BIRD by cmd/pqedge's anycast tests.
type fakeDevice struct {
	name string

	mu        sync.Mutex // guards the fields below
	announced map[netip.Prefix]bool
	loopback  []netip.Prefix
	closed    bool
	// listenerBound, if set, is asked at each Announce or Withdraw whether
	// the prefix's listener still accepts; its answers are recorded.
	listenerBound func() bool
	boundAt       []bool
}

func (d *fakeDevice) Announce(p netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("device closed")
	}
	d.announced[p] = true
	return nil
}

func (d *fakeDevice) Withdraw(p netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.announced, p)
	if d.listenerBound != nil {
		d.boundAt = append(d.boundAt, d.listenerBound())
	}
	return nil
}

func (d *fakeDevice) EnsureLoopback(p netip.Prefix) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if slices.Contains(d.loopback, p) {
		return false, nil
	}
	d.loopback = append(d.loopback, p)
	return true, nil
}

func (d *fakeDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	clear(d.announced)
	return nil
}

func (d *fakeDevice) isAnnounced(p netip.Prefix) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.announced[p]
}

func (d *fakeDevice) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// fakeDevices opens fake devices and keeps them for the test to inspect.
type fakeDevices struct {
	mu     sync.Mutex
	opened []*fakeDevice
	err    error // returned by open when set
}

func (f *fakeDevices) open(name string) (AnycastDevice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	d := &fakeDevice{name: name, announced: map[netip.Prefix]bool{}}
	f.opened = append(f.opened, d)
	return d, nil
}

func (f *fakeDevices) only(t *testing.T) *fakeDevice {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.opened) != 1 {
		t.Fatalf("%d anycast devices opened, want 1", len(f.opened))
	}
	return f.opened[0]
}

var svc = netip.MustParsePrefix("192.0.2.53/32")

// anycastConfig serves DNS over TLS on dotAddress from a pool with fast
// active health checks; anycastExtra may announce it. The service address
// 192.0.2.53 is bound before it exists (the fake device puts nothing on
// lo), which only an anycast listener may do (FreeBind).
func anycastConfig(dotAddress, upstream, anycastExtra string) string {
	return fmt.Sprintf(`
data_dir = "{{DATA}}/data"
[admin]
listen = "127.0.0.1:0"
[log]
access = false
[timeouts]
withdraw_grace = "1m"
shutdown = "2m"
[[listener]]
name = "https"
address = "127.0.0.1:0"
[[listener]]
name = "dot"
address = %q
kind = "stream"
site = "local"
pool = "dns"
`+inspectSite+`[[pool]]
name = "dns"
upstreams = [%q]
[pool.health]
interval = "20ms"
unhealthy_threshold = 1
healthy_threshold = 1
%s`, dotAddress, upstream, anycastExtra)
}

const anycastBlock = `
[anycast]
rise = 2
interval = "50ms"
hold_down = "400ms"
[[anycast.prefix]]
prefix = "192.0.2.53/32"
listeners = ["dot"]
`

// anycastState fetches /anycast?format=json.
func (ts *testServer) anycastState() anycastReport {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.srv.AdminAddr().String() + "/anycast?format=json")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep anycastReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		ts.t.Fatalf("/anycast JSON: %v", err)
	}
	return rep
}

// TestAnycastFollowsHealth: the prefix is announced once pqedge is ready,
// withdrawn when the pool behind its listener has no healthy upstream, and
// announced again after rise samples and the hold-down once it is back;
// /anycast, the metrics and the log of transitions say why each time.
func TestAnycastFollowsHealth(t *testing.T) {
	up := newFlakyUpstream(t)
	devs := &fakeDevices{}
	ts := startServerWith(t, anycastConfig("192.0.2.53:0", up.addr, anycastBlock), Options{OpenAnycastDevice: devs.open})
	dev := devs.only(t)
	if dev.name != config.DefaultAnycastDevice {
		t.Errorf("device %q, want %q", dev.name, config.DefaultAnycastDevice)
	}
	if !slices.Equal(dev.loopback, []netip.Prefix{svc}) {
		t.Errorf("service addresses put on lo: %v, want %v", dev.loopback, svc)
	}
	// New returns ready, and the first announcement needs one sample.
	if !dev.isAnnounced(svc) {
		t.Fatal("not announced once New returned")
	}
	rep := ts.anycastState()
	if len(rep.Prefixes) != 1 || !rep.Prefixes[0].Announced || rep.Prefixes[0].Reason != `serving on "dot"` ||
		!slices.Equal(rep.Prefixes[0].Listeners, []string{"dot"}) {
		t.Errorf("/anycast after start: %+v", rep.Prefixes)
	}

	up.down()
	waitFor(t, "the withdrawal", func() bool { return !dev.isAnnounced(svc) })
	rep = ts.anycastState()
	wantReason := `listener "dot": pool "dns" has no healthy upstream (1 down)`
	if p := rep.Prefixes[0]; p.Announced || p.Healthy || p.Reason != wantReason || p.HoldUntil == nil {
		t.Errorf("/anycast after the pool died: %+v, want withdrawn for %q and held down", p, wantReason)
	}
	if got := ts.metric(`pqedge_anycast_announced{prefix="192.0.2.53/32"}`); got != "0" {
		t.Errorf("pqedge_anycast_announced = %q, want 0", got)
	}

	up.up()
	waitFor(t, "the announcement after the pool came back", func() bool { return dev.isAnnounced(svc) })
	rep = ts.anycastState()
	var got []string
	for _, tr := range rep.Transitions {
		got = append(got, tr.Action+" "+tr.Cause)
	}
	if want := []string{"announce healthy", "withdraw unhealthy", "announce healthy"}; !slices.Equal(got, want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	if tr := rep.Transitions[1]; tr.Reason != wantReason {
		t.Errorf("withdrawal reason %q, want %q", tr.Reason, wantReason)
	}
	// The flap control in the server's own clock: the route came back no
	// sooner than the hold-down after it went.
	if gap := rep.Transitions[2].At.Sub(rep.Transitions[1].At); gap < 400*time.Millisecond {
		t.Errorf("re-announced %v after the withdrawal, before the 400ms hold-down", gap)
	}
	for _, m := range []struct{ series, want string }{
		{`pqedge_anycast_announced{prefix="192.0.2.53/32"}`, "1"},
		{`pqedge_anycast_healthy{prefix="192.0.2.53/32"}`, "1"},
		{`pqedge_anycast_transitions_total{action="announce",cause="healthy",prefix="192.0.2.53/32",result="ok"}`, "2"},
		{`pqedge_anycast_transitions_total{action="withdraw",cause="unhealthy",prefix="192.0.2.53/32",result="ok"}`, "1"},
	} {
		if got := ts.metric(m.series); got != m.want {
			t.Errorf("%s = %q, want %s", m.series, got, m.want)
		}
	}
}

// TestAnycastShutdown: Shutdown withdraws the prefix while the listener is
// still bound, reports it unhealthy from then on, and closes the device
// once drained.
func TestAnycastShutdown(t *testing.T) {
	up := newFlakyUpstream(t)
	devs := &fakeDevices{}
	ts := startServerWith(t, anycastConfig("192.0.2.53:0", up.addr, anycastBlock), Options{OpenAnycastDevice: devs.open})
	dev := devs.only(t)
	key := ts.srv.current.Load().plan.Listener("dot").SocketKey
	dev.mu.Lock()
	dev.listenerBound = func() bool { return ts.srv.sockets.addr(key) != nil }
	dev.mu.Unlock()

	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(context.Background()) }()
	waitFor(t, "the withdrawal", func() bool { return !dev.isAnnounced(svc) })
	rep := ts.anycastState()
	if p := rep.Prefixes[0]; p.Announced || p.Healthy || p.Reason != "pqedge is shutting down" {
		t.Errorf("/anycast during shutdown: %+v, want withdrawn, unhealthy: pqedge is shutting down", p)
	}
	if last := rep.Transitions[len(rep.Transitions)-1]; last.Action != "withdraw" || last.Cause != "shutdown" {
		t.Errorf("last transition %+v, want a withdrawal for shutdown", last)
	}
	ts.srv.EndGrace()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if !slices.Equal(dev.boundAt, []bool{true}) {
		t.Errorf("listener bound at each withdrawal: %v, want [true] (withdrawn once, before the listener closed)", dev.boundAt)
	}
	if !dev.closed {
		t.Error("the device is still open after Shutdown")
	}
}

// TestAnycastReload: a reload may add, keep and remove prefixes and the
// whole block, but not move to another device; a failed device open stops
// the start with nothing left behind.
func TestAnycastReload(t *testing.T) {
	up := newFlakyUpstream(t)
	devs := &fakeDevices{}
	// A wildcard address: without [anycast] the service address cannot be
	// bound.
	const dotAddress = "0.0.0.0:0"
	ts := startServerWith(t, anycastConfig(dotAddress, up.addr, ""), Options{OpenAnycastDevice: devs.open})
	if len(devs.opened) != 0 {
		t.Fatal("a device was opened without [anycast]")
	}
	resp, err := http.Get("http://" + ts.srv.AdminAddr().String() + "/anycast")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/anycast without [anycast]: %s, want 404", resp.Status)
	}
	reload := func(extra string) error {
		t.Helper()
		return ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, anycastConfig(dotAddress, up.addr, extra)))
	}

	// Added by a reload: the device is opened then, the prefix announced.
	if err := reload(anycastBlock); err != nil {
		t.Fatal(err)
	}
	dev := devs.only(t)
	waitFor(t, "the announcement", func() bool { return dev.isAnnounced(svc) })

	// Another device: refused with the key and its line; nothing changes.
	err = reload(strings.Replace(anycastBlock, "[anycast]\n", "[anycast]\ndevice = \"anycast1\"\n", 1))
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Key != "anycast.device" || ps[0].Line == 0 ||
		!strings.Contains(ps[0].Msg, `cannot change the anycast device from "pqedge-any0" to "anycast1"`) {
		t.Fatalf("reload to another device: %v, want one problem at anycast.device", err)
	}
	if !dev.isAnnounced(svc) || len(devs.opened) != 1 {
		t.Error("the refused reload changed the announcement or opened a device")
	}

	// Removed: withdrawn, the device stays for a later config.
	if err := reload(""); err != nil {
		t.Fatal(err)
	}
	if dev.isAnnounced(svc) || dev.isClosed() {
		t.Errorf("after removing [anycast]: announced %v, device closed %v; want withdrawn and open", dev.isAnnounced(svc), dev.isClosed())
	}
	rep := ts.anycastState()
	if last := rep.Transitions[len(rep.Transitions)-1]; last.Cause != "removed" || len(rep.Prefixes) != 0 {
		t.Errorf("/anycast after removing the block: %+v", rep)
	}
	if err := reload(anycastBlock); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the announcement after the block came back", func() bool { return dev.isAnnounced(svc) })

	t.Run("device fails to open", func(t *testing.T) {
		devs := &fakeDevices{err: errors.New("permission denied (pqedge needs CAP_NET_ADMIN)")}
		cfg := loadConfig(t, t.TempDir(), anycastConfig("192.0.2.53:0", up.addr, anycastBlock))
		srv, err := New(cfg, Options{Logger: testLogger(t), OpenAnycastDevice: devs.open})
		if err == nil {
			srv.Shutdown(t.Context())
			t.Fatal("New succeeded without its anycast device")
		}
		if !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Errorf("New: %v, want the device's error", err)
		}
	})
}
