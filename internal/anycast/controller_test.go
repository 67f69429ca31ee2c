package anycast

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	svc4 = netip.MustParsePrefix("192.0.2.53/32")
	svc6 = netip.MustParsePrefix("2001:db8::53/128")
)

// harness drives a Controller with a fake clock and device and logs its
// transitions as "ELAPSED announce|withdraw CAUSE: REASON[ (error)]".
type harness struct {
	t     *testing.T
	clock *fakeClock
	dev   *fakeAnnouncer
	c     *Controller
	start time.Time
	log   []string
}

func newHarness(t *testing.T, anns ...Announcement) *harness {
	h := &harness{t: t, clock: newFakeClock(), dev: newFakeAnnouncer()}
	h.start = h.clock.Now()
	h.c = NewController(h.dev, Options{Clock: h.clock, OnTransition: func(tr Transition) {
		verb := "withdraw"
		if tr.Announced {
			verb = "announce"
		}
		line := fmt.Sprintf("%v %s %s: %s", tr.At.Sub(h.start), verb, tr.Cause, tr.Reason)
		if tr.Err != nil {
			line += " (error)"
		}
		if len(anns) > 1 {
			line = tr.Prefix.String() + " " + line
		}
		h.log = append(h.log, line)
	}})
	if err := h.c.Configure(anns); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(h.c.Close)
	return h
}

// run executes script lines:
//
//	wait D              advance the clock by D
//	up REASON           Update(healthy) for the first prefix
//	down REASON         Update(unhealthy)
//	fail / heal         the device starts / stops refusing changes
//	policy R F I H      Configure the first prefix with a new policy
//	remove              Configure no prefix at all
//	withdraw-all REASON WithdrawAll
func (h *harness) run(p netip.Prefix, script []string) {
	h.t.Helper()
	for _, line := range script {
		verb, arg, _ := strings.Cut(line, " ")
		var err error
		switch verb {
		case "wait":
			d, perr := time.ParseDuration(arg)
			if perr != nil {
				h.t.Fatalf("bad script line %q", line)
			}
			h.clock.Advance(d)
		case "up", "down":
			err = h.c.Update(p, verb == "up", arg)
		case "fail", "heal":
			h.dev.setFailing(verb == "fail")
		case "policy":
			err = h.c.Configure([]Announcement{{Prefix: p, Policy: parsePolicy(h.t, arg)}})
		case "remove":
			err = h.c.Configure(nil)
		case "withdraw-all":
			err = h.c.WithdrawAll(arg)
		default:
			h.t.Fatalf("bad script line %q", line)
		}
		if err != nil && !errors.Is(err, errRefused) {
			h.t.Fatalf("%s: %v", line, err)
		}
	}
}

// parsePolicy reads "RISE FALL INTERVAL HOLD_DOWN", e.g. "3 1 1s 10s".
func parsePolicy(t *testing.T, s string) Policy {
	f := strings.Fields(s)
	if len(f) != 4 {
		t.Fatalf("bad policy %q", s)
	}
	rise, err1 := strconv.Atoi(f[0])
	fall, err2 := strconv.Atoi(f[1])
	interval, err3 := time.ParseDuration(f[2])
	hold, err4 := time.ParseDuration(f[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatalf("bad policy %q: %v", s, err)
	}
	return Policy{Rise: rise, Fall: fall, Interval: interval, HoldDown: hold}
}

func TestControllerStateMachine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy string // RISE FALL INTERVAL HOLD_DOWN
		script []string
		want   []string
		// announced is the device's state at the end.
		announced bool
	}{
		{
			name:   "first healthy report announces at once",
			policy: "3 1 1s 10s",
			script: []string{"up ready"},
			want:   []string{"0s announce healthy: ready"}, announced: true,
		},
		{
			name:   "nothing before the first healthy report",
			policy: "3 1 1s 10s",
			script: []string{"down starting", "wait 5s", "up ready", "wait 30s"},
			want:   []string{"5s announce healthy: ready"}, announced: true,
		},
		{
			name:   "fall 1 withdraws on the first bad report",
			policy: "3 1 1s 10s",
			script: []string{"up ready", "wait 1s", "down pool api has no healthy upstream", "wait 5s"},
			want:   []string{"0s announce healthy: ready", "1s withdraw unhealthy: pool api has no healthy upstream"},
		},
		{
			name:   "fall 3 withdraws on the third sample",
			policy: "3 3 1s 10s",
			script: []string{"up ready", "wait 1s", "down pool", "wait 5s"},
			want:   []string{"0s announce healthy: ready", "3s withdraw unhealthy: pool"}, // samples at 1s, 2s, 3s
		},
		{
			name:   "recovery before fall keeps the route",
			policy: "3 3 1s 10s",
			script: []string{"up ready", "wait 1s", "down pool", "wait 1500ms", "up pool back", "wait 30s"},
			want:   []string{"0s announce healthy: ready"}, announced: true,
		},
		{
			name:   "rise without hold-down",
			policy: "3 1 1s 0s",
			script: []string{"up ready", "wait 1s", "down pool", "wait 1s", "up pool back", "wait 10s"},
			want: []string{"0s announce healthy: ready", "1s withdraw unhealthy: pool",
				"4s announce healthy: pool back"}, // samples at 2s, 3s, 4s
			announced: true,
		},
		{
			name:   "hold-down delays a re-announcement rise allows",
			policy: "3 1 1s 10s",
			script: []string{"up ready", "wait 1s", "down pool", "wait 1s", "up pool back", "wait 9500ms", "wait 1s"},
			want: []string{"0s announce healthy: ready", "1s withdraw unhealthy: pool",
				"11s announce healthy: pool back"}, // rise met at 4s, held until 1s+10s
			announced: true,
		},
		{
			name:      "rise longer than hold-down",
			policy:    "10 1 1s 2s",
			script:    []string{"up ready", "down pool", "up pool back", "wait 20s"},
			want:      []string{"0s announce healthy: ready", "0s withdraw unhealthy: pool", "9s announce healthy: pool back"},
			announced: true,
		},
		{
			name:   "a flapping upstream moves the route once per hold-down",
			policy: "2 1 1s 10s",
			script: []string{
				"up ready", "wait 1s", "down flap", "wait 1s", "up", "wait 1s", "down flap", "wait 1s", "up",
				"wait 1s", "down flap", "wait 1s", "up steady", "wait 10s",
				"down flap again", "wait 1s", "up", "wait 5s",
			},
			want: []string{"0s announce healthy: ready", "1s withdraw unhealthy: flap",
				"11s announce healthy: steady", "16s withdraw unhealthy: flap again"},
		},
		{
			name:   "a bad sample restarts the rise count",
			policy: "3 1 1s 0s",
			script: []string{"up ready", "wait 1s", "down a", "wait 1s", "up b", "wait 1s", "down c", "wait 500ms", "up d", "wait 10s"},
			want: []string{"0s announce healthy: ready", "1s withdraw unhealthy: a",
				"5.5s announce healthy: d"}, // samples at 3.5s, 4.5s, 5.5s
			announced: true,
		},
		{
			name:   "repeated reports only update the reason",
			policy: "3 2 1s 10s",
			script: []string{"up ready", "down first", "wait 400ms", "down second", "wait 400ms", "down third", "wait 5s"},
			want:   []string{"0s announce healthy: ready", "1s withdraw unhealthy: third"},
		},
		{
			name:   "a refused announcement is retried at the next sample",
			policy: "3 1 1s 10s",
			script: []string{"fail", "up ready", "wait 500ms", "heal", "wait 2s"},
			want:   []string{"0s announce healthy: ready (error)", "1s announce healthy: ready"}, announced: true,
		},
		{
			name:   "a refused withdrawal is retried at the next sample",
			policy: "3 1 1s 10s",
			script: []string{"up ready", "fail", "down pool", "wait 1s", "heal", "wait 1s", "wait 5s"},
			want: []string{"0s announce healthy: ready", "0s withdraw unhealthy: pool (error)",
				"1s withdraw unhealthy: pool (error)", "2s withdraw unhealthy: pool"},
		},
		{
			name:   "withdraw-all withdraws and announces nothing after",
			policy: "1 1 1s 0s",
			script: []string{"up ready", "wait 1s", "withdraw-all SIGTERM", "down x", "up y", "wait 1m"},
			want:   []string{"0s announce healthy: ready", "1s withdraw shutdown: SIGTERM"},
		},
		{
			name:   "withdraw-all on a withdrawn prefix reports nothing",
			policy: "1 1 1s 0s",
			script: []string{"down starting", "withdraw-all SIGTERM", "up ready"},
			want:   nil,
		},
		{
			name:   "a removed prefix is withdrawn",
			policy: "3 1 1s 10s",
			script: []string{"up ready", "wait 2s", "remove", "wait 1m"},
			want:   []string{"0s announce healthy: ready", "2s withdraw removed: removed from the configuration"},
		},
		{
			name:   "a policy change applies to a running count",
			policy: "3 5 1s 10s",
			script: []string{"up ready", "wait 1s", "down pool", "wait 1s", "policy 3 2 1s 10s", "wait 10s"},
			want:   []string{"0s announce healthy: ready", "2s withdraw unhealthy: pool"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Announcement{Prefix: svc4, Policy: parsePolicy(t, tc.policy)})
			h.run(svc4, tc.script)
			if !reflect.DeepEqual(h.log, tc.want) {
				t.Errorf("transitions:\n  %s\nwant:\n  %s", strings.Join(h.log, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if got := h.dev.isAnnounced(svc4); got != tc.announced {
				t.Errorf("device announces %s: %v, want %v", svc4, got, tc.announced)
			}
		})
	}
}

// TestControllerPrefixesAreIndependent checks that each prefix has its own
// state, and that WithdrawAll takes down every announced one.
func TestControllerPrefixesAreIndependent(t *testing.T) {
	pol := Policy{Rise: 2, Fall: 1, Interval: time.Second, HoldDown: 5 * time.Second}
	h := newHarness(t, Announcement{Prefix: svc4, Policy: pol}, Announcement{Prefix: svc6, Policy: pol})
	h.run(svc4, []string{"up dot ready"})
	h.run(svc6, []string{"up https ready", "wait 1s", "down pool www down", "wait 10s"})
	h.run(svc4, []string{"withdraw-all SIGTERM"})
	want := []string{
		"192.0.2.53/32 0s announce healthy: dot ready",
		"2001:db8::53/128 0s announce healthy: https ready",
		"2001:db8::53/128 1s withdraw unhealthy: pool www down",
		"192.0.2.53/32 11s withdraw shutdown: SIGTERM",
	}
	if !reflect.DeepEqual(h.log, want) {
		t.Errorf("transitions:\n  %s\nwant:\n  %s", strings.Join(h.log, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestControllerState(t *testing.T) {
	pol := Policy{Rise: 3, Fall: 1, Interval: time.Second, HoldDown: 10 * time.Second}
	h := newHarness(t, Announcement{Prefix: svc6, Policy: pol}, Announcement{Prefix: svc4, Policy: pol})
	if got := h.c.State(); len(got) != 2 || got[0].Prefix != svc4 || got[0].Announced || got[0].Healthy || !got[0].Since.IsZero() {
		t.Fatalf("initial State = %+v, want both prefixes withdrawn, unreported, IPv4 first", got)
	}
	h.run(svc4, []string{"up ready", "wait 2s", "down pool api is down"})
	withdrawnAt := h.clock.Now()
	h.dev.setFailing(true)
	h.run(svc6, []string{"up ready"})
	got := h.c.State()
	want := []PrefixState{
		{Prefix: svc4, Reason: "pool api is down", Since: withdrawnAt, HoldUntil: withdrawnAt.Add(10 * time.Second)},
		{Prefix: svc6, Healthy: true, Reason: "ready", LastError: errRefused},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("State =\n  %+v\nwant\n  %+v", got, want)
	}
	h.dev.setFailing(false)
	h.clock.Advance(11 * time.Second)
	for _, st := range h.c.State() {
		if st.Prefix == svc6 && (!st.Announced || st.LastError != nil) {
			t.Errorf("after a successful retry: %+v, want announced with no error", st)
		}
		if st.Prefix == svc4 && !st.HoldUntil.IsZero() {
			t.Errorf("hold-down over, but State says %+v", st)
		}
	}
}

func TestControllerErrors(t *testing.T) {
	pol := Policy{Rise: 3, Fall: 1, Interval: time.Second, HoldDown: 10 * time.Second}
	for _, tc := range []struct {
		name string
		anns []Announcement
		want string
	}{
		{"a /24", []Announcement{{netip.MustParsePrefix("192.0.2.0/24"), pol}}, "must be a single address, 192.0.2.0/32"},
		{"rise 0", []Announcement{{svc4, Policy{Fall: 1, Interval: time.Second}}}, "prefix 192.0.2.53/32: rise must be at least 1"},
		{"fall 0", []Announcement{{svc4, Policy{Rise: 1, Interval: time.Second}}}, "fall must be at least 1"},
		{"no interval", []Announcement{{svc4, Policy{Rise: 1, Fall: 1}}}, "interval must be positive"},
		{"negative hold-down", []Announcement{{svc4, Policy{Rise: 1, Fall: 1, Interval: time.Second, HoldDown: -1}}}, "hold_down must not be negative"},
		{"twice", []Announcement{{svc4, pol}, {svc4, pol}}, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Announcement{Prefix: svc6, Policy: pol})
			h.run(svc6, []string{"up ready"})
			err := h.c.Configure(tc.anns)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Configure = %v, want an error containing %q", err, tc.want)
			}
			if st := h.c.State(); len(st) != 1 || st[0].Prefix != svc6 || !st[0].Announced {
				t.Errorf("a refused Configure changed the state: %+v", st)
			}
		})
	}
	t.Run("unknown prefix", func(t *testing.T) {
		h := newHarness(t, Announcement{Prefix: svc6, Policy: pol})
		if err := h.c.Update(svc4, true, "ready"); err == nil || !strings.Contains(err.Error(), "192.0.2.53/32 is not configured") {
			t.Errorf("Update of an unknown prefix = %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		h := newHarness(t, Announcement{Prefix: svc6, Policy: pol})
		h.c.Close()
		for name, err := range map[string]error{
			"Update":      h.c.Update(svc6, true, "ready"),
			"Configure":   h.c.Configure(nil),
			"WithdrawAll": h.c.WithdrawAll("x"),
		} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close = %v, want ErrClosed", name, err)
			}
		}
		if len(h.log) != 0 || h.dev.isAnnounced(svc6) {
			t.Errorf("a closed controller acted: %v", h.log)
		}
	})
	t.Run("withdraw-all returns refusals", func(t *testing.T) {
		h := newHarness(t, Announcement{Prefix: svc6, Policy: pol})
		h.run(svc6, []string{"up ready", "fail"})
		if err := h.c.WithdrawAll("SIGTERM"); !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "failed to withdraw 2001:db8::53/128") {
			t.Errorf("WithdrawAll = %v, want the device's refusal", err)
		}
	})
}
