package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startServerWith is startServer with options set by the test.
func startServerWith(t testing.TB, cfgText string, opts Options) *testServer {
	t.Helper()
	dir := t.TempDir()
	cfg := loadConfig(t, dir, cfgText)
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("failed to start: %v", err)
	}
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.EndGrace()
		srv.Shutdown(ctx)
	})
	return ts
}

// readyz fetches /readyz as text and as JSON; use it where the answer
// cannot change between the two requests.
func (ts *testServer) readyz() (code int, text string, rd readiness) {
	ts.t.Helper()
	code, text = ts.readyzText()
	jcode, rd := ts.readyzJSON()
	if jcode != code || rd.Ready != (code == http.StatusOK) {
		ts.t.Fatalf("/readyz answered %d as text, %d with ready=%v as JSON", code, jcode, rd.Ready)
	}
	return code, text, rd
}

func (ts *testServer) readyzText() (int, string) {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.srv.AdminAddr().String() + "/readyz")
	if err != nil {
		ts.t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (ts *testServer) readyzJSON() (int, readiness) {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.srv.AdminAddr().String() + "/readyz?format=json")
	if err != nil {
		ts.t.Fatalf("GET /readyz?format=json: %v", err)
	}
	defer resp.Body.Close()
	var rd readiness
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		ts.t.Fatalf("/readyz JSON: %v", err)
	}
	return resp.StatusCode, rd
}

// failed returns the checks that failed.
func (rd readiness) failed() []readyCheck {
	var out []readyCheck
	for _, c := range rd.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// flakyUpstream is a TCP upstream that can be taken down and brought back
// on the same address.
type flakyUpstream struct {
	t    testing.TB
	addr string
	ln   atomic.Pointer[net.Listener]
}

func newFlakyUpstream(t testing.TB) *flakyUpstream {
	u := &flakyUpstream{t: t}
	u.up()
	u.addr = (*u.ln.Load()).Addr().String()
	t.Cleanup(u.down)
	return u
}

// up listens (again) and accepts and closes connections, which passes a
// TCP health check.
func (u *flakyUpstream) up() {
	addr := "127.0.0.1:0"
	if u.addr != "" {
		addr = u.addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		u.t.Fatalf("upstream: %v", err)
	}
	u.ln.Store(&ln)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (u *flakyUpstream) down() {
	if ln := u.ln.Load(); ln != nil {
		(*ln).Close()
	}
}

// TestReadyz: /readyz answers 200 only when every check passes, and its
// text and JSON say which check failed.
func TestReadyz(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		ts := startServer(t, baseConfig+inspectSite)
		code, text, rd := ts.readyz()
		if code != http.StatusOK || !strings.HasPrefix(text, "ready\n") {
			t.Fatalf("/readyz = %d %q, want 200 ready", code, text)
		}
		for _, want := range []string{
			"ok    started: serving ",
			"ok    shutdown: not shutting down",
			`ok    listener "https": bound on ` + ts.addr("https"),
			`ok    certificates of site "local": classical valid until `,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("/readyz text lacks %q:\n%s", want, text)
			}
		}
		if len(rd.Checks) != 4 {
			t.Errorf("JSON has %d checks, want 4: %+v", len(rd.Checks), rd.Checks)
		}
		if got := ts.metric("pqedge_ready "); got != "1" {
			t.Errorf("pqedge_ready = %q, want 1", got)
		}
	})

	t.Run("ready_pools without a healthy upstream", func(t *testing.T) {
		up := newFlakyUpstream(t)
		ts := startServer(t, `
data_dir = "{{DATA}}/data"
[admin]
listen = "127.0.0.1:0"
ready_pools = ["api"]
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:0"
[[pool]]
name = "api"
upstreams = ["`+up.addr+`"]
[pool.health]
interval = "50ms"
unhealthy_threshold = 1
healthy_threshold = 1
[[pool]]
name = "other"
upstreams = ["127.0.0.1:1"]
`+inspectSite)
		if code, text, _ := ts.readyz(); code != http.StatusOK {
			t.Fatalf("/readyz = %d before the upstream died:\n%s", code, text)
		}
		up.down()
		var rd readiness
		waitFor(t, "/readyz to fail on pool api", func() bool {
			var code int
			code, rd = ts.readyzJSON()
			return code == http.StatusServiceUnavailable
		})
		failed := rd.failed()
		if len(failed) != 1 || failed[0].Check != `pool "api"` || failed[0].Detail != "has no healthy upstream (1 down)" {
			t.Errorf("failed checks %+v, want only pool \"api\" with no healthy upstream", failed)
		}
		_, text := ts.readyzText()
		if first, _, _ := strings.Cut(text, "\n"); first != `not ready: pool "api": has no healthy upstream (1 down)` {
			t.Errorf("first line %q does not name the failed check", first)
		}
		if got := ts.metric("pqedge_ready "); got != "0" {
			t.Errorf("pqedge_ready = %q, want 0", got)
		}
		up.up()
		waitFor(t, "/readyz to recover", func() bool {
			code, _ := ts.readyzJSON()
			return code == http.StatusOK
		})
	})

	t.Run("expired certificate", func(t *testing.T) {
		var skew atomic.Int64
		ts := startServerWith(t, baseConfig+inspectSite, Options{
			Now:               func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
			CertCheckInterval: -1, // no renewal: the local leaf is left to expire
		})
		skew.Store(int64(5 * 365 * 24 * time.Hour))
		code, text, rd := ts.readyz()
		failed := rd.failed()
		if code != http.StatusServiceUnavailable || len(failed) != 1 || failed[0].Check != `certificates of site "local"` ||
			!strings.Contains(failed[0].Detail, "certificate expired at") {
			t.Errorf("/readyz with an expired certificate = %d, failed %+v:\n%s", code, failed, text)
		}
	})
}
