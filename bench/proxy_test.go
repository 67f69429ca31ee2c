package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/internal/peers"
)

// shippedLimits are pqedge's default caps on connections in total, per
// client address, on handshakes in progress and on one address's
// handshakes.
var shippedLimits = [4]int{connlimit.DefaultMaxConns, connlimit.DefaultMaxConnsPerClient, connlimit.DefaultMaxHandshakes,
	connlimit.DefaultMaxHandshakesPerClient}

// The config pqedge runs with is one its own loader accepts, for every
// combination of listeners and for classical-only groups.
func TestPQEdgeProxyConfig(t *testing.T) {
	dir := t.TempDir()
	chain, err := MakeChain(dir, certs.AlgECDSAP256, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                     string
		groups                   []tls.CurveID
		upstream, streamUpstream string
		https, stream            string
		held                     int // ProxySpec.HeldConns
		client                   int // ProxySpec.ClientConns
		// the limits pqedge runs with: connections, per client,
		// handshakes, handshakes per client
		wantLimits [4]int
	}{
		{"https", []tls.CurveID{tls.X25519MLKEM768}, "127.0.0.1:8080", "", "127.0.0.1:9443", "", 0, 0, shippedLimits},
		{"stream", []tls.CurveID{tls.X25519MLKEM768}, "", "127.0.0.1:5353", "", "127.0.0.1:9853", 0, 0, shippedLimits},
		{"both", []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, "127.0.0.1:8080", "127.0.0.1:5353", "127.0.0.1:9443", "127.0.0.1:9853", 0, 0, shippedLimits},
		{"classical only", []tls.CurveID{tls.X25519}, "unix:/run/app.sock", "", "127.0.0.1:9443", "", 0, 0, shippedLimits},
		// A memory mode holding 4,000 connections from one address.
		{"held connections", []tls.CurveID{tls.X25519MLKEM768}, "127.0.0.1:8080", "", "127.0.0.1:9443", "", 4000, 0,
			[4]int{connlimit.DefaultMaxConns, 4000 + heldConnsMargin, 4000 + heldConnsMargin, 4000 + heldConnsMargin}},
		// A load mode opening 200 connections at once from one address.
		{"many client connections", []tls.CurveID{tls.X25519MLKEM768}, "127.0.0.1:8080", "", "127.0.0.1:9443", "", 0, 200,
			[4]int{connlimit.DefaultMaxConns, connlimit.DefaultMaxConnsPerClient, connlimit.DefaultMaxHandshakes, 200}},
		// More than pqedge's handshake places (slots and queue): its
		// config check refuses a per-address cap it can never reach.
		{"more client connections than handshake places", []tls.CurveID{tls.X25519MLKEM768}, "127.0.0.1:8080", "", "127.0.0.1:9443", "", 0, 1024,
			[4]int{connlimit.DefaultMaxConns, connlimit.DefaultMaxConnsPerClient, connlimit.DefaultMaxHandshakes, connlimit.DefaultMaxHandshakes + connlimit.DefaultHandshakeQueue}},
		{"few client connections", []tls.CurveID{tls.X25519MLKEM768}, "127.0.0.1:8080", "", "127.0.0.1:9443", "", 0, 32, shippedLimits},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := ProxySpec{Chain: chain, Groups: tt.groups, Upstream: tt.upstream, StreamUpstream: tt.streamUpstream, HeldConns: tt.held, ClientConns: tt.client}
			conf := PQEdgeProxyConfig(spec, filepath.Join(dir, "data"), tt.https, tt.stream)
			file := filepath.Join(t.TempDir(), "pqedge.toml")
			if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(file)
			if err != nil {
				t.Fatalf("pqedge refuses the generated config: %v\n%s", err, conf)
			}
			if cfg.Log.AccessLog() || cfg.Admin.Listen != "" {
				t.Error("access log or admin listener on: the other fronts have neither")
			}
			if l := cfg.Limits; l.Connections == nil || l.ConnectionsPerClient == nil || l.Handshakes == nil || l.HandshakesPerClient == nil ||
				[4]int{*l.Connections, *l.ConnectionsPerClient, *l.Handshakes, *l.HandshakesPerClient} != tt.wantLimits {
				t.Errorf("limits connections, connections_per_client, handshakes, handshakes_per_client = %v, %v, %v, %v; want %v",
					l.Connections, l.ConnectionsPerClient, l.Handshakes, l.HandshakesPerClient, tt.wantLimits)
			}
			var addrs, pools []string
			for _, l := range cfg.Listener {
				addrs = append(addrs, l.Address)
			}
			for _, p := range cfg.Pool {
				pools = append(pools, p.Upstreams...)
			}
			for _, want := range []string{tt.https, tt.stream} {
				if want != "" && !slices.Contains(addrs, want) {
					t.Errorf("listeners %v lack %s", addrs, want)
				}
			}
			for _, want := range []string{tt.upstream, tt.streamUpstream} {
				if want != "" && !slices.Contains(pools, want) {
					t.Errorf("pools %v lack %s", pools, want)
				}
			}
		})
	}
}

// nginx's config as a front and as the upstream passes `nginx -t` in the
// peer root, with the stream module loaded.
func TestNginxConfigs(t *testing.T) {
	root := peers.Trixie(t)
	if _, err := os.Stat(filepath.Join(root.Root, nginxStreamModule)); err != nil {
		peers.Missing(t, "nginx's stream module (libnginx-mod-stream) in the trixie root")
	}
	l := NginxLauncher{Root: root.Root}
	host, inside, err := l.workDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	chain, err := MakeChain(host, certs.AlgECDSAP256, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	spec := ProxySpec{Chain: chain, Groups: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, Upstream: "127.0.0.1:8080", StreamUpstream: "127.0.0.1:5353", MaxConns: 3000}
	for name, conf := range map[string]string{
		"front":    NginxProxyConfig(spec, inside, "127.0.0.1:9443", "127.0.0.1:9853"),
		"upstream": nginxUpstreamConfig(inside, "127.0.0.1:8080", 3000),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(host, "nginx.conf"), []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("chroot", root.Root, "/usr/sbin/nginx", "-t", "-c", inside+"/nginx.conf").CombinedOutput()
			if err != nil {
				t.Fatalf("nginx -t: %v\n%s\n%s", err, out, conf)
			}
			for _, want := range []string{"keepalive_requests 1000000000", "worker_connections 6256"} {
				if !strings.Contains(conf, want) {
					t.Errorf("config lacks %q", want)
				}
			}
		})
	}
}

func TestParseProxyModes(t *testing.T) {
	got, err := ParseProxyModes([]string{"h2", "idle", "h2"})
	if err != nil || !slices.Equal(got, []string{"h2", "idle"}) {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := ParseProxyModes([]string{"h3"}); err == nil || !strings.Contains(err.Error(), "known: h1, h2") {
		t.Errorf("unknown mode: %v", err)
	}
	for _, m := range ProxyModes {
		if u := ModeUnit(m); u != "request" && u != "MiB" && u != "connection" {
			t.Errorf("mode %s has unit %q", m, u)
		}
	}
}

func TestH2LoadArgs(t *testing.T) {
	o := H2LoadOptions{URL: "https://localhost/bench", ConnectTo: "127.0.0.1:9443", Clients: 32, Streams: 10,
		Warmup: time.Second, Duration: 2500 * time.Millisecond, Timeout: 5 * time.Second, Groups: []tls.CurveID{tls.X25519MLKEM768}}
	got := strings.Join(h2loadArgs(o, "/tmp/log"), " ")
	want := "-c 32 -D 2500ms -N 5s -t 1 --log-file /tmp/log --warm-up-time 1000ms -m 10 --connect-to 127.0.0.1:9443 --groups X25519MLKEM768 https://localhost/bench"
	if got != want {
		t.Errorf("h2 args:\n got %s\nwant %s", got, want)
	}
	o.HTTP1 = true
	if got := h2loadArgs(o, "/tmp/log"); !slices.Contains(got, "--h1") || slices.Contains(got, "-m") {
		t.Errorf("h1 args: %v", got)
	}
}

// The result math: medians over runs, per-unit counts, spread, and the
// memory numbers divided by the connections held.
func TestSummarizeCell(t *testing.T) {
	c := ProxyCell{Front: ServerPQEdge, Mode: ModeH2, GoRuntime: true, Runs: []ProxyRun{
		{Units: 1000, Rate: 500, FrontCPU: 200 * time.Microsecond, UpstreamConns: 10, Mallocs: 100_000, AllocBytes: 40 << 20, Latency: Latency{P50: time.Millisecond}},
		{Units: 2000, Rate: 700, FrontCPU: 180 * time.Microsecond, UpstreamConns: 0, Mallocs: 220_000, AllocBytes: 70 << 20, Latency: Latency{P50: 3 * time.Millisecond}},
		{Units: 1000, Rate: 600, FrontCPU: 220 * time.Microsecond, UpstreamConns: 2, Mallocs: 110_000, AllocBytes: 41 << 20, Latency: Latency{P50: 2 * time.Millisecond}},
	}}
	summarizeCell(&c)
	if c.FrontCPU != 200*time.Microsecond || c.Rate != 600 || c.P50 != 2*time.Millisecond {
		t.Errorf("medians: CPU %v rate %v p50 %v", c.FrontCPU, c.Rate, c.P50)
	}
	if c.Spread != 0.2 || !c.Noisy {
		t.Errorf("spread %v noisy %v, want 0.2 (40µs over 200µs) and flagged", c.Spread, c.Noisy)
	}
	if c.UpstreamPer1k != 2 || c.AllocsPerUnit != 110 || c.AllocBytesPerUnit != 40*1024*1024/1000.0 {
		t.Errorf("per unit: upstream %v allocs %v bytes %v", c.UpstreamPer1k, c.AllocsPerUnit, c.AllocBytesPerUnit)
	}

	m := ProxyCell{Front: ServerNginx, Mode: ModeIdle, Runs: []ProxyRun{
		{Conns: 1000, RSSDelta: 20 << 20, HeapDelta: 5 << 20},
		{Conns: 1000, RSSDelta: 22 << 20},
	}}
	summarizeCell(&m)
	if math.Abs(m.RSSPerConn-21*1024*1024/1000.0) > 0.01 || m.Conns != 1000 || m.HeapPerConn != 0 {
		t.Errorf("memory: %+v", m)
	}

	zero := ProxyCell{Front: ServerNginx, Mode: ModePreHandshake, Runs: []ProxyRun{{Conns: 10}, {Conns: 10}}}
	summarizeCell(&zero)
	if zero.Spread != 0 || zero.Noisy {
		t.Errorf("runs that all measured 0: spread %v", zero.Spread)
	}
	if _, err := json.Marshal(zero); err != nil {
		t.Error(err)
	}

	failed := ProxyCell{Mode: ModeH1, Error: "boom", Runs: []ProxyRun{{Units: 1, FrontCPU: time.Second}}}
	summarizeCell(&failed)
	if failed.FrontCPU != 0 {
		t.Error("a failed cell got numbers")
	}
}

func TestProxyChecks(t *testing.T) {
	cell := func(front, mode string, cpu time.Duration, rss float64) ProxyCell {
		return ProxyCell{Front: front, Mode: mode, FrontCPU: cpu, RSSPerConn: rss, Runs: []ProxyRun{{OtherLoad: 0.1}, {OtherLoad: 1.5}}}
	}
	r := &ProxyResult{Cells: []ProxyCell{
		cell(ServerPQEdge, ModeH1, 150*time.Microsecond, 0),
		cell(ServerPlain, ModeH1, 160*time.Microsecond, 0),
		cell(ServerNginx, ModeH1, 50*time.Microsecond, 0),
		cell(ServerPQEdge, ModeH2, 270*time.Microsecond, 0),
		cell(ServerPlain, ModeH2, 150*time.Microsecond, 0),
		cell(ServerPQEdge, ModeIdle, 0, 19<<10),
		cell(ServerPQEdge, ModePreHandshake, 0, 12<<10),
		{Front: ServerNginx, Mode: ModeH2, Error: "did not start"},
	}}
	got := map[string]Check{}
	for _, c := range ProxyChecks(r) {
		got[c.Name[:20]] = c
	}
	for prefix, want := range map[string]struct{ holds, skipped bool }{
		"pqedge CPU per reque": {false, false}, // h2 1.80x the floor
		"pqedge CPU per conne": {true, true},   // no handshake cells
		"pqedge idle TLS conn": {true, false},
		"pqedge pre-handshake": {false, false},
		"the machine was quie": {false, false}, // median of 0.1 and 1.5: 0.8 CPUs
	} {
		c, ok := got[prefix]
		if !ok || c.Holds != want.holds || c.Skipped != want.skipped {
			t.Errorf("check %q: %+v, want holds %v skipped %v", prefix, c, want.holds, want.skipped)
		}
	}
	// h1 is 3.00x nginx, over 2.5x; nginx's h2 cell failed and is left out.
	nginx := got["pqedge CPU per reque"]
	for _, c := range ProxyChecks(r) {
		if strings.Contains(c.Name, "nginx") {
			nginx = c
		}
	}
	if nginx.Holds || !strings.Contains(nginx.Detail, "h1 3.00x") || strings.Contains(nginx.Detail, "h2") {
		t.Errorf("nginx check: %+v", nginx)
	}
}

// Failed cells print their errors and no numbers, in the table and the CSV.
func TestWriteProxyOutput(t *testing.T) {
	r := &ProxyResult{Runs: 1, Cells: []ProxyCell{
		{Front: ServerPQEdge, Mode: ModeH1, Unit: "request", GoRuntime: true, Runs: []ProxyRun{{}}, Rate: 6000, FrontCPU: 160 * time.Microsecond, P50: time.Millisecond, P90: 2 * time.Millisecond, P99: 3 * time.Millisecond, AllocsPerUnit: 105},
		{Front: ServerNginx, Mode: ModeH1, Unit: "request", Error: "12 failures: h2load: 12 answers 5xx", Errors: []ErrorCount{{Kind: "status:5xx", Count: 12, Example: "h2load: 12 answers 5xx"}}},
		{Front: ServerNginx, Mode: ModeIdle, Unit: "connection", Runs: []ProxyRun{{}}, Conns: 100, RSSPerConn: 25 << 10},
	}}
	r.Checks = ProxyChecks(r)
	var table bytes.Buffer
	if err := WriteProxyTable(&table, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"160µs/req", "6000 req/s", "FAILED h1 nginx", "status:5xx: 12", "25.0 KiB"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var buf bytes.Buffer
	if err := WriteProxyCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 4 {
		t.Fatalf("CSV %v: %q", err, rows)
	}
	col := func(row []string, name string) string { return row[slices.Index(proxyCSVHeader, name)] }
	if col(rows[1], "front_cpu_us") != "160.0" || col(rows[1], "allocs_per_unit") != "105.0" || col(rows[1], "rss_per_conn") != "" {
		t.Errorf("pqedge h1 row: %q", rows[1])
	}
	for _, name := range []string{"rate", "front_cpu_us", "p99_us", "rss_bytes"} {
		if col(rows[2], name) != "" {
			t.Errorf("failed row has %s = %q", name, col(rows[2], name))
		}
	}
	if col(rows[3], "rss_per_conn") != "25600" || col(rows[3], "heap_per_conn") != "" || col(rows[3], "front_cpu_us") != "" {
		t.Errorf("nginx idle row: %q", rows[3])
	}
}

// failingUpstream points the floor at a closed port: every request gets
// 502 from it.
type failingUpstream struct{ inProcessPlainProxy }

func (f failingUpstream) Kind() string { return ServerPQEdge }

func (f failingUpstream) StartProxy(ctx context.Context, spec ProxySpec) (*Front, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	spec.Upstream = ln.Addr().String()
	ln.Close()
	return f.inProcessPlainProxy.StartProxy(ctx, spec)
}

// A tiny run of every kind of mode against the floor run in-process, and
// a front whose every request fails: its cell has errors by kind and no
// numbers. Needs nginx (the upstream) and h2load from the peer root.
func TestProxyEndToEnd(t *testing.T) {
	root := peers.Trixie(t)
	if err := H2LoadPresent(root.Root); err != nil {
		peers.Missing(t, "h2load in the trixie root")
	}
	var log bytes.Buffer
	res, err := Proxy(context.Background(), ProxyOptions{
		Fronts:   []ProxyLauncher{inProcessPlainProxy{}, failingUpstream{}},
		Modes:    []string{ModeH1, ModeH2, ModeStream, ModeHandshake, ModeIdle, ModePreHandshake},
		PeerRoot: root.Root, Dir: t.TempDir(),
		Runs: 1, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Connections: 4, Streams: 2, StreamConns: 2, HandshakeConcurrency: 2, IdleConns: 20, BodyBytes: 100,
		// Generous: the race detector on a shared machine is slow.
		Timeout: 20 * time.Second, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(res.Cells) != 12 {
		t.Fatalf("%d cells, want 12:\n%s", len(res.Cells), log.String())
	}
	for _, c := range res.Cells {
		if c.Front == ServerPQEdge { // the failing front
			if c.Mode == ModeStream || c.Mode == ModePreHandshake {
				continue // no HTTP upstream involved
			}
			if c.Error == "" || len(c.Errors) == 0 || c.FrontCPU != 0 || c.RSSPerConn != 0 || len(c.Runs) != 0 {
				t.Errorf("%s cell of the failing front: %+v", c.Mode, c)
			}
			continue
		}
		if c.Error != "" {
			t.Errorf("%s cell failed: %s\n%s", c.Mode, c.Error, log.String())
			continue
		}
		switch {
		case isMemoryMode(c.Mode):
			if c.Conns != 20 || c.RSS <= 0 {
				t.Errorf("%s cell: %d conns, RSS %d", c.Mode, c.Conns, c.RSS)
			}
		case c.Rate <= 0 || c.FrontCPU <= 0 || c.RSS <= 0:
			t.Errorf("%s cell without numbers: %+v", c.Mode, c)
		case c.Mode != ModeStream && c.P50 <= 0:
			t.Errorf("%s cell without latencies", c.Mode)
		}
	}
	if _, err := json.Marshal(res); err != nil {
		t.Error(err)
	}
	if res.LoadAvg[0] <= 0 || res.Group != "X25519MLKEM768" || res.Cert != "ecdsa-p256" {
		t.Errorf("result header: %+v", res)
	}
}
