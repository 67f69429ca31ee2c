package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// healthLog records OnHealthChange calls.
type healthLog struct {
	mu      sync.Mutex
	changes []bool
}

func (h *healthLog) hook(pool, addr string, healthy bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.changes = append(h.changes, healthy)
}

func (h *healthLog) get() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.changes)
}

func healthyOf(p *Pool, i int) bool { return p.Upstreams()[i].Healthy }

func TestHealthCheckHTTPRecovery(t *testing.T) {
	var failing atomic.Bool
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Header.Get("User-Agent") != "pqedge-health-check" {
			http.Error(w, "unexpected request", http.StatusNotFound)
			return
		}
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	var log healthLog
	pool := newTestPool(t, PoolOptions{
		Addresses:      []string{up},
		Health:         HealthOptions{Interval: 10 * time.Millisecond, Path: "/healthz", HealthyThreshold: 2, UnhealthyThreshold: 2},
		OnHealthChange: log.hook,
	})
	failing.Store(true)
	waitFor(t, "upstream marked unhealthy", func() bool { return !healthyOf(pool, 0) })
	if _, _, err := pool.Dial(t.Context(), netip.Addr{}); err == nil || !strings.Contains(err.Error(), ErrNoHealthyUpstream.Error()) {
		t.Errorf("Dial with no healthy upstream: err = %v", err)
	}
	failing.Store(false)
	waitFor(t, "upstream healthy again", func() bool { return healthyOf(pool, 0) })
	waitFor(t, "two notifications", func() bool { return len(log.get()) == 2 })
	if got := log.get(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("OnHealthChange calls = %v, want [false true]", got)
	}
}

func TestHealthCheckTCPRecovery(t *testing.T) {
	tests := []struct {
		name   string
		health HealthOptions
		// kick makes traffic fail, for pools that only probe after errors.
		kick bool
	}{
		{"active checks", HealthOptions{Interval: 10 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1}, false},
		{"probes only", HealthOptions{Interval: -1, HealthyThreshold: 1, UnhealthyThreshold: 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A unix socket can be re-bound at the same path, unlike a TCP
			// port someone else might grab meanwhile.
			path := filepath.Join(t.TempDir(), "stream.sock")
			listen := func() net.Listener {
				ln, err := net.Listen("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						c.Close()
					}
				}()
				return ln
			}
			ln := listen()
			pool := newTestPool(t, PoolOptions{
				Addresses: []string{"unix:" + path}, MaxFails: 100, EjectFor: 10 * time.Millisecond, Health: tt.health,
			})
			ln.Close()
			if tt.kick {
				if _, _, err := pool.Dial(t.Context(), netip.Addr{}); err == nil {
					t.Fatal("dial to a closed socket succeeded")
				}
			}
			waitFor(t, "upstream marked unhealthy", func() bool { return !healthyOf(pool, 0) })
			ln = listen()
			defer ln.Close()
			waitFor(t, "upstream healthy again", func() bool { return healthyOf(pool, 0) })
			c, addr, err := pool.Dial(t.Context(), netip.Addr{})
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if addr != "unix:"+path {
				t.Errorf("Dial picked %q", addr)
			}
		})
	}
}

func TestPassiveEjectionEnds(t *testing.T) {
	var log healthLog
	dead := deadAddr(t)
	pool := newTestPool(t, PoolOptions{
		Addresses: []string{dead}, MaxFails: 2, EjectFor: 50 * time.Millisecond,
		Health: HealthOptions{Interval: -1}, OnHealthChange: log.hook,
	})
	for i := range 2 {
		if _, _, err := pool.Dial(t.Context(), netip.Addr{}); err == nil {
			t.Fatalf("dial %d to a dead upstream succeeded", i)
		}
	}
	if st := pool.Upstreams()[0]; !st.Ejected || st.Healthy {
		t.Fatalf("after MaxFails failures: %+v, want ejected", st)
	}
	waitFor(t, "ejection to end", func() bool { return healthyOf(pool, 0) })
	waitFor(t, "two notifications", func() bool { return len(log.get()) == 2 })
	if got := log.get(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("OnHealthChange calls = %v, want [false true]", got)
	}
}

func TestNewPoolErrors(t *testing.T) {
	tests := []struct {
		name string
		opts PoolOptions
		want string
	}{
		{"no addresses", PoolOptions{}, "no upstream addresses"},
		{"missing port", PoolOptions{Addresses: []string{"127.0.0.1"}}, "want host:port, https://host:port or unix:/path"},
		{"empty unix path", PoolOptions{Addresses: []string{"unix:"}}, "empty unix socket path"},
		{"relative unix path", PoolOptions{Addresses: []string{"unix:run/app.sock"}}, "is not absolute"},
		{"empty host", PoolOptions{Addresses: []string{":8080"}}, "want host:port, https://host:port or unix:/path"},
		{"empty port", PoolOptions{Addresses: []string{"127.0.0.1:"}}, "want host:port, https://host:port or unix:/path"},
		{"service name port", PoolOptions{Addresses: []string{"127.0.0.1:http"}}, `port "http" is not a number from 1 to 65535`},
		{"port zero", PoolOptions{Addresses: []string{"127.0.0.1:0"}}, `port "0" is not a number`},
		{"port too large", PoolOptions{Addresses: []string{"127.0.0.1:65536"}}, `port "65536" is not a number`},
		{"negative port", PoolOptions{Addresses: []string{"127.0.0.1:-1"}}, `port "-1" is not a number`},
		{"duplicate", PoolOptions{Addresses: []string{"127.0.0.1:1", "127.0.0.1:1"}}, "listed twice"},
		{"duplicate unix", PoolOptions{Addresses: []string{"unix:/run/app.sock", "unix:/run/app.sock"}}, "listed twice"},
		{"duplicate but for case", PoolOptions{Addresses: []string{"app.internal:1", "App.Internal:1"}}, `upstream "App.Internal:1" listed twice`},
		{"relative health path", PoolOptions{Addresses: []string{"127.0.0.1:1"}, Health: HealthOptions{Path: "healthz"}}, "must start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPool("app", tt.opts)
			if err == nil {
				p.Close()
				t.Fatal("NewPool succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), `failed to create pool "app"`) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestReportFailureAfterClose checks that data-path failures of requests
// that outlive Close (a reload retires a pool while requests finish) start
// neither an ejection timer nor a probe goroutine.
func TestReportFailureAfterClose(t *testing.T) {
	p, err := NewPool("app", PoolOptions{Addresses: []string{"127.0.0.1:1"}, MaxFails: 1, Health: HealthOptions{Interval: -1}, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	u := p.ups[0]
	for range 3 {
		p.reportFailure(u, errors.New("refused"))
	}
	st := u.state
	if st.probing.Load() {
		t.Error("a probe started after Close")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ejectTimer != nil || st.consecFails != 0 {
		t.Errorf("after Close: eject timer %v, %d failures counted; want none", st.ejectTimer, st.consecFails)
	}
}
