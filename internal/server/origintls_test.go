package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/internal/peers"
)

// TestOriginLegs runs pqedge in front of nginx 1.26 (OpenSSL 3.5, the
// trixie root) reached through https:// pools: one origin offering hybrid
// groups, one only classical ones, and the classical one again behind
// pq_required. What the origin leg negotiated must show in the access log
// next to the client leg, in pqedge_upstream_handshakes_total (one
// handshake for several requests: keep-alive), and in the adoption page's
// end-to-end share; pq_required must answer 502, eject the origin, count
// and log the refusal.
func TestOriginLegs(t *testing.T) {
	root := peers.Trixie(t)
	host, inside := root.TempDir(t)
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "origin-ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"origin.test"}, Alg: certs.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKeyPair(filepath.Join(host, "origin"), leaf); err != nil {
		t.Fatal(err)
	}
	hybrid, classical := originAddr(t), originAddr(t)
	startOrigins(t, root, host, inside, map[string]string{
		hybrid:    "X25519MLKEM768:SecP256r1MLKEM768:x25519",
		classical: "x25519:prime256v1",
	})

	pool := func(name, addr, extra string) string {
		return fmt.Sprintf(`
[[pool]]
name = %q
upstreams = ["https://%s"]
tls_ca = "origin-ca/root.crt"
tls_server_name = "origin.test"
%s`, name, addr, extra)
	}
	cfgText := `
data_dir = "{{DATA}}/data"
[admin]
listen = "127.0.0.1:0"
[[listener]]
name = "https"
address = "127.0.0.1:0"
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/pq/"
pool = "pq"
[[site.route]]
path = "/classical/"
pool = "classical"
[[site.route]]
path = "/strict/"
pool = "strict"
` + pool("pq", hybrid, "") + pool("classical", classical, "") + pool("strict", classical, "pq_required = true\n[pool.health]\neject_after = 1\neject_for = \"1h\"\n")
	cfg := loadConfig(t, dir, cfgText)
	logs := &syncBuffer{}
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	base := "https://" + ts.addr("https")
	pqClient, classicalClient := ts.client(tls.X25519MLKEM768), ts.client(tls.X25519)

	for _, r := range []struct {
		client   *http.Client
		path     string
		wantCode int
		wantBody string // nginx's $ssl_curve: X25519MLKEM768 by codepoint
	}{
		{pqClient, "/pq/1", 200, "curve=0x11ec"},
		{pqClient, "/pq/2", 200, "curve=0x11ec"},
		{pqClient, "/pq/3", 200, "curve=0x11ec"},
		{classicalClient, "/pq/4", 200, "curve=0x11ec"},
		{pqClient, "/classical/1", 200, "curve=X25519"},
		{pqClient, "/strict/1", 502, "TLS handshake failed"},
	} {
		resp, err := r.client.Get(base + r.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.wantCode || !strings.Contains(string(body), r.wantBody) {
			t.Errorf("GET %s: %d %q, want %d with %q", r.path, resp.StatusCode, body, r.wantCode, r.wantBody)
		}
	}

	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pqedge_upstream_handshakes_total", []string{`pool="pq"`, `group="X25519MLKEM768"`, `pq="true"`}, 1},
		{"pqedge_upstream_handshakes_total", []string{`pool="classical"`, `group="x25519"`, `pq="false"`}, 1},
		{"pqedge_upstream_handshakes_total", []string{`pool="strict"`}, 0},
		{"pqedge_upstream_handshake_failures_total", []string{`pool="strict"`, `reason="no_common_group"`}, 1},
	} {
		if got := ts.metricSum(m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	waitFor(t, "the refused origin to be reported unhealthy", func() bool {
		return ts.metric(`pqedge_upstream_healthy{pool="strict"`) == "0"
	})

	// The access log (on by default) puts the origin leg next to the
	// client leg.
	for _, want := range [][]string{
		{"path=/pq/1", "group=X25519MLKEM768 pq=true", "upstream_group=X25519MLKEM768 upstream_pq=true"},
		{"path=/pq/4", "group=x25519 pq=false", "upstream_group=X25519MLKEM768 upstream_pq=true"},
		{"path=/classical/1", "group=X25519MLKEM768 pq=true", "upstream_group=x25519 upstream_pq=false"},
		{"upstream TLS handshake failed", "pool=strict", "reason=no_common_group", "pq_required: the origin accepted none of the post-quantum groups offered"},
	} {
		if !logs.hasLine(want...) {
			t.Errorf("no log line with %q:\n%s", want, logs)
		}
	}
	if logs.hasLine("path=/strict/1", "upstream_group=") {
		t.Errorf("a refused origin leg is logged with a group:\n%s", logs)
	}

	// Five requests reached https origins: four over a post-quantum origin
	// leg, three of them from a post-quantum client.
	resp, err := http.Get("http://" + srv.AdminAddr().String() + "/adoption?format=json")
	if err != nil {
		t.Fatal(err)
	}
	var rep pages.AdoptionReport
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := pages.AdoptionEndToEnd{Requests: 5, OriginPQ: 4, PQ: 3, Share: 0.6}
	if got := rep.Windows[0].EndToEnd; got != want {
		t.Errorf("adoption end to end: %+v, want %+v", got, want)
	}
	resp, err = http.Get("http://" + srv.AdminAddr().String() + "/adoption")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "End to end post-quantum: <strong>60.0%</strong> of 5 requests") {
		t.Errorf("the adoption page lacks the end-to-end share:\n%s", page)
	}
}

// originAddr returns a loopback address that was free a moment ago.
func originAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startOrigins runs one nginx in root with an https server per address,
// each offering its groups (ssl_ecdh_curve) and answering "curve=..." from
// its own side of the handshake, until the test ends.
func startOrigins(t *testing.T, root *peers.Chroot, host, inside string, curves map[string]string) {
	t.Helper()
	var servers strings.Builder
	for addr, groups := range curves {
		fmt.Fprintf(&servers, `	server {
		listen %s ssl;
		ssl_certificate %[2]s/origin.crt;
		ssl_certificate_key %[2]s/origin.key;
		ssl_ecdh_curve %s;
		location / {
			default_type text/plain;
			return 200 "curve=$ssl_curve";
		}
	}
`, addr, inside, groups)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events {}
http {
	access_log off;
	client_body_temp_path %[1]s;
	proxy_temp_path %[1]s;
	fastcgi_temp_path %[1]s;
	uwsgi_temp_path %[1]s;
	scgi_temp_path %[1]s;
%[2]s}
`, inside, servers.String())
	if err := os.WriteFile(filepath.Join(host, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := root.Command(ctx, "nginx", "-c", inside+"/nginx.conf")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(host, "error.log"))
			t.Logf("nginx output: %s\nerror.log: %s", out, log)
		}
	})
	for addr := range curves {
		waitFor(t, "nginx to listen on "+addr, func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
}

// syncBuffer collects log lines written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hasLine reports whether one line contains every part.
func (b *syncBuffer) hasLine(parts ...string) bool {
	for _, line := range strings.Split(b.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestOriginTLSReload: a pool's origin TLS files are read again on reload;
// a reload whose tls_ca is gone is refused and the running config keeps
// reaching the origin over TLS. The origin here is a Go server, so this
// runs without the peers.
func TestOriginTLSReload(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "origin-ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"origin.test"}, Alg: certs.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "origin saw "+r.TLS.ServerName)
	}))
	origin.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
	origin.StartTLS()
	defer origin.Close()
	cfgText := baseConfig + `
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/"
pool = "origin"
[[pool]]
name = "origin"
upstreams = ["https://` + origin.Listener.Addr().String() + `"]
tls_ca = "origin-ca/root.crt"
tls_server_name = "origin.test"
pq_required = true
`
	cfg := loadConfig(t, dir, cfgText)
	srv, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	get := func() string {
		t.Helper()
		resp, err := ts.client(tls.X25519MLKEM768).Get("https://" + ts.addr("https") + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	if got := get(); got != "200 origin saw origin.test" {
		t.Fatalf("before the reload: %q", got)
	}
	next := loadConfig(t, dir, cfgText)
	if err := os.Rename(filepath.Join(dir, "origin-ca", "root.crt"), filepath.Join(dir, "root.crt.moved")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(t.Context(), next); err == nil || !strings.Contains(err.Error(), "root.crt") {
		t.Errorf("reload without the tls_ca file: %v, want it refused naming the file", err)
	}
	if got := get(); got != "200 origin saw origin.test" {
		t.Errorf("after the refused reload: %q", got)
	}
	if n := ts.metricSum("pqedge_upstream_handshakes_total", `pool="origin"`, `group="X25519MLKEM768"`, `pq="true"`); n < 1 {
		t.Errorf("no post-quantum origin handshake counted: %v", n)
	}
}
