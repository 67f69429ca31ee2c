package server

import (
	"context"
	"crypto/mldsa"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/internal/peers"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// proxyInConfig is a listener behind a load balancer at 127.0.0.1, whose
// site routes to an upstream that echoes the X-Forwarded-For it receives,
// and serves its ML-DSA chain to clients of 192.0.2.0/24 (pq_rule).
func proxyInConfig(upstream string) string {
	return `
data_dir = "{{DATA}}/data"
[admin]
listen = "127.0.0.1:0"
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:0"
proxy_protocol_in = ["127.0.0.1/32"]
[[site]]
name = "local"
server_names = ["localhost"]
[[site.pq_rule]]
network = "192.0.2.0/24"
mode = "always"
[[site.route]]
path = "/"
pool = "echo"
[[pool]]
name = "echo"
upstreams = ["` + upstream + `"]
`
}

func xffUpstream(t *testing.T) string {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(up.Close)
	return strings.TrimPrefix(up.URL, "http://")
}

// dialFrom connects from a loopback source address and first sends header
// (nil: none).
func dialFrom(ctx context.Context, src, addr string, header *proxyproto.Header) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if header != nil {
		if _, err := header.WriteTo(c); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func proxyHeaderFor(version byte, client string) *proxyproto.Header {
	return &proxyproto.Header{Version: version, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP(client), Port: 40000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 443}}
}

// TestProxyProtocolIn sends PROXY headers, good and hostile, from a trusted
// load balancer's address and from elsewhere, and checks who is served as
// whom: the header's client address is the connection's address for the
// upstream (X-Forwarded-For), for pq_rule and for the handshake record; a
// missing, malformed or untrusted header is refused before TLS and
// counted.
func TestProxyProtocolIn(t *testing.T) {
	var mu sync.Mutex
	var events []HandshakeEvent
	dir := t.TempDir()
	cfg := loadConfig(t, dir, proxyInConfig(xffUpstream(t)))
	srv, err := New(cfg, Options{Logger: testLogger(t), OnHandshake: func(ev HandshakeEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	addr := ts.addr("https")
	tests := []struct {
		name   string
		src    string // the connection's source: 127.0.0.1 is the trusted balancer
		header *proxyproto.Header
		raw    string // bytes sent instead of a header
		client string // the address pqedge should see; "" when refused
		mldsa  bool   // pq_rule gives this client the ML-DSA chain
	}{
		{"trusted, v1", "127.0.0.1", proxyHeaderFor(1, "198.51.100.7"), "", "198.51.100.7", false},
		{"trusted, v2", "127.0.0.1", proxyHeaderFor(2, "198.51.100.8"), "", "198.51.100.8", false},
		{"trusted, client in a pq_rule network", "127.0.0.1", proxyHeaderFor(2, "192.0.2.9"), "", "192.0.2.9", false}, // the Go client cannot verify the ML-DSA chain: classical
		{"trusted, no header", "127.0.0.1", nil, "", "", false},
		{"trusted, malformed v1", "127.0.0.1", nil, "PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n", "", false},
		{"trusted, v2 of an unknown version", "127.0.0.1", nil, "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c", "", false},
		{"untrusted, forged header", "127.0.0.2", proxyHeaderFor(2, "192.0.2.10"), "", "", false},
		{"untrusted, plain TLS", "127.0.0.2", nil, "", "127.0.0.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			before := len(events)
			mu.Unlock()
			dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := dialFrom(ctx, tt.src, addr, tt.header)
				if err == nil && tt.raw != "" {
					io.WriteString(c, tt.raw)
				}
				return c, err
			}
			var chain []*mldsa.PublicKey
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial,
				TLSClientConfig: &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
					if k, ok := cs.PeerCertificates[0].PublicKey.(*mldsa.PublicKey); ok {
						chain = append(chain, k)
					}
					return nil
				}}}}
			resp, err := c.Get("https://" + addr + "/")
			if tt.client == "" {
				if err == nil {
					resp.Body.Close()
					t.Fatal("served")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != tt.client {
					t.Errorf("the upstream saw X-Forwarded-For %q, want %q", body, tt.client)
				}
				if (len(chain) > 0) != tt.mldsa {
					t.Errorf("ML-DSA chain served: %v, want %v", len(chain) > 0, tt.mldsa)
				}
			}
			var ev HandshakeEvent
			waitFor(t, "the handshake event", func() bool {
				mu.Lock()
				defer mu.Unlock()
				if len(events) > before {
					ev = events[before]
					return true
				}
				return false
			})
			switch {
			case tt.client == "" && ev.Reason != reasonProxyProtocol:
				t.Errorf("refusal counted as %q (%v), want %q", ev.Reason, ev.Err, reasonProxyProtocol)
			case tt.client != "" && !strings.HasPrefix(ev.Remote(), tt.client+":"):
				t.Errorf("handshake recorded from %s, want %s", ev.Remote(), tt.client)
			}
		})
	}
	if got := ts.metricSum("pqedge_handshake_failures_total", `reason="proxy_protocol"`); got != 4 {
		t.Errorf("proxy_protocol failures counted %v, want 4", got)
	}

	// pq_rule judges the header's client address: a client of the
	// rule's network that can verify the ML-DSA chain gets it.
	for _, tt := range []struct {
		client string
		want   tls.SignatureScheme
	}{{"192.0.2.9", tls.MLDSA65}, {"198.51.100.9", tls.ECDSAWithP256AndSHA256}} {
		c, err := dialFrom(t.Context(), "127.0.0.1", addr, proxyHeaderFor(2, tt.client))
		if err != nil {
			t.Fatal(err)
		}
		res, err := leanclient.Handshake(t.Context(), c, &leanclient.Config{ServerName: "localhost", Groups: []tls.CurveID{tls.X25519MLKEM768},
			SignatureAlgorithms: []tls.SignatureScheme{tls.MLDSA65, tls.MLDSA87, tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384}, Timeout: 5 * time.Second})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.SignatureScheme != tt.want {
			t.Errorf("client %s behind the balancer: signed with %s, want %s", tt.client, pqtls.SignatureName(res.SignatureScheme), pqtls.SignatureName(tt.want))
		}
	}
}

// TestProxyProtocolInFromHAProxy puts a real HAProxy 3.0 (send-proxy-v2)
// in front of pqedge: a client connecting to HAProxy from 127.0.0.3 is that
// address to pqedge's upstream.
func TestProxyProtocolInFromHAProxy(t *testing.T) {
	root := peers.Trixie(t)
	if _, err := os.Stat(filepath.Join(root.Root, "usr/sbin/haproxy")); err != nil {
		peers.Missing(t, "haproxy in the trixie root")
	}
	ts := startServer(t, proxyInConfig(xffUpstream(t)))
	front := freeport.Must(t)
	host, inside := root.TempDir(t)
	conf := `global
  log stderr format raw local0 err
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend edge
  bind 127.0.0.1:` + strconv.Itoa(front) + `
  default_backend pqedge
backend pqedge
  server pqedge ` + ts.addr("https") + ` send-proxy-v2
`
	if err := os.WriteFile(filepath.Join(host, "haproxy.cfg"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := root.Command(ctx, "haproxy", "-db", "-f", inside+"/haproxy.cfg")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", out.String())
		}
	})
	frontAddr := "127.0.0.1:" + strconv.Itoa(front)
	waitFor(t, "haproxy to listen", func() bool {
		c, err := net.DialTimeout("tcp", frontAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialFrom(ctx, "127.0.0.3", frontAddr, nil)
		},
		TLSClientConfig: &tls.Config{ServerName: "localhost", RootCAs: ts.roots()},
	}}
	resp, err := c.Get("https://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "127.0.0.3" {
		t.Errorf("behind HAProxy the upstream saw X-Forwarded-For %q, want the client's 127.0.0.3", body)
	}
}

// TestHandshakeCapSparesTrustedBalancers: limits.handshakes_per_client
// does not count a trusted load balancer's connections, which carry many
// clients, while an untrusted address on the same listener is capped.
func TestHandshakeCapSparesTrustedBalancers(t *testing.T) {
	ts := startServer(t, proxyInConfig(xffUpstream(t))+"[limits]\nhandshakes_per_client = 1\n")
	addr := ts.addr("https")
	cfg := &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"}
	for _, src := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.2"} {
		c, err := dialFrom(t.Context(), src, addr, nil) // sends nothing: holds a slot
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "three handshakes in progress", func() bool { return ts.metricSum("pqedge_handshakes_in_progress") == 3 })

	c, err := dialFrom(t.Context(), "127.0.0.1", addr, proxyHeaderFor(2, "198.51.100.7"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := tls.Client(c, cfg).HandshakeContext(t.Context()); err != nil {
		t.Errorf("a trusted balancer's third handshake: %v, want it served", err)
	}
	c2, err := dialFrom(t.Context(), "127.0.0.2", addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := tls.Client(c2, cfg).HandshakeContext(t.Context()); err == nil {
		t.Error("an untrusted address's second handshake got through a cap of 1")
	}

	// One client behind the balancer: its first handshake stops after
	// the server's flight and holds its place; its second is refused.
	held, err := dialFrom(t.Context(), "127.0.0.1", addr, proxyHeaderFor(2, "198.51.100.9"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	flight := make(chan struct{})
	go tls.Client(&stallAfterFirstRead{Conn: held, first: flight, stop: t.Context().Done()}, cfg).HandshakeContext(t.Context())
	select {
	case <-flight:
	case <-time.After(10 * time.Second):
		t.Fatal("no server flight for the held handshake")
	}
	c3, err := dialFrom(t.Context(), "127.0.0.1", addr, proxyHeaderFor(2, "198.51.100.9"))
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := tls.Client(c3, cfg).HandshakeContext(t.Context()); err == nil {
		t.Error("a second handshake of one client behind the balancer got through a cap of 1")
	}
	if n := ts.metricSum("pqedge_connections_refused_total", `reason="handshakes_per_client"`); n != 2 {
		t.Errorf("per-client handshake refusals counted %v, want 2", n)
	}
}

// stallAfterFirstRead lets a TLS client read the server's first bytes,
// says so on first, and then blocks its reads until stop: a handshake
// that holds its place after the server's flight.
type stallAfterFirstRead struct {
	net.Conn
	first chan struct{}
	stop  <-chan struct{}
	read  bool
}

func (c *stallAfterFirstRead) Read(b []byte) (int, error) {
	if c.read {
		<-c.stop
		return 0, io.EOF
	}
	c.read = true
	n, err := c.Conn.Read(b)
	close(c.first)
	return n, err
}

// TestTrustedProxyMatches checks which peers proxy_protocol_in trusts:
// IPv4 over IPv6 sockets and link-local balancers (whose addresses carry
// their interface's zone) match the networks an operator writes.
func TestTrustedProxyMatches(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fe80::/64"), netip.MustParsePrefix("2001:db8::/48")}
	tests := []struct {
		name string
		addr net.Addr
		want bool
	}{
		{"IPv4 in the network", &net.TCPAddr{IP: net.ParseIP("10.0.0.7"), Port: 4000}, true},
		{"IPv4 outside it", &net.TCPAddr{IP: net.ParseIP("10.0.1.7"), Port: 4000}, false},
		{"IPv4-mapped, in the IPv4 network", &net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.7"), Port: 4000}, true},
		{"link-local with its zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 4000}, true},
		{"link-local without a zone", &net.TCPAddr{IP: net.ParseIP("fe80::2"), Port: 4000}, true},
		{"link-local outside the /64", &net.TCPAddr{IP: net.ParseIP("fe80:0:0:1::1"), Zone: "eth0", Port: 4000}, false},
		{"IPv6 in the network", &net.TCPAddr{IP: net.ParseIP("2001:db8:0:5::1"), Port: 4000}, true},
		{"QUIC peer (UDP) with a zone", &net.UDPAddr{IP: net.ParseIP("fe80::3"), Zone: "veth1", Port: 4000}, true},
		{"another kind of address, parsed", stringAddr("[fe80::4%eth1]:4000"), true},
		{"a unix socket", &net.UnixAddr{Name: "/run/lb.sock", Net: "unix"}, false},
		{"an IP without a port", stringAddr("10.0.0.7"), false},
	}
	for _, tt := range tests {
		if got := trustedProxy(tt.addr, trusted); got != tt.want {
			t.Errorf("%s: trustedProxy(%v) = %v, want %v", tt.name, tt.addr, got, tt.want)
		}
	}
	if trustedProxy(&net.TCPAddr{IP: net.ParseIP("10.0.0.7")}, nil) {
		t.Error("a listener without proxy_protocol_in trusts a peer")
	}
}

// stringAddr is a net.Addr known only by its string.
type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

// TestProxyProtocolThenPlainHTTP: plain HTTP after a trusted balancer's
// PROXY header (v1 or v2, either address family, a v2 header with TLVs or
// of the LOCAL command, in one write or two) gets the same 400 "use
// https" answer as without one, counted not_tls, and the handshake record
// names the header's client, not the balancer (issue 12, kind 9).
func TestProxyProtocolThenPlainHTTP(t *testing.T) {
	hs := &handshakeLog{}
	ts := startServerWith(t, proxyInConfig(xffUpstream(t)), Options{OnHandshake: hs.add})
	addr := ts.addr("https")
	header := func(h *proxyproto.Header) []byte {
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v6 := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv6,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 40000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("::1"), Port: 443}}
	withTLV := proxyHeaderFor(2, "198.51.100.12")
	if err := withTLV.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("localhost")}}); err != nil {
		t.Fatal(err)
	}
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}
	get := []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	tests := []struct {
		name   string
		send   [][]byte
		client string // the address the record names
	}{
		{"v1", [][]byte{append(header(proxyHeaderFor(1, "198.51.100.10")), get...)}, "198.51.100.10"},
		{"v2", [][]byte{append(header(proxyHeaderFor(2, "198.51.100.11")), get...)}, "198.51.100.11"},
		{"v2, IPv6", [][]byte{append(header(v6), get...)}, "[2001:db8::7]"},
		{"v2 with a TLV", [][]byte{append(header(withTLV), get...)}, "198.51.100.12"},
		{"v2, the request apart", [][]byte{header(proxyHeaderFor(2, "198.51.100.13")), get}, "198.51.100.13"},
		{"v1, a POST with a body", [][]byte{append(header(proxyHeaderFor(1, "198.51.100.14")),
			"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n"+strings.Repeat("a", 5000)...)}, "198.51.100.14"},
		{"v2, 60 header fields", [][]byte{append(header(proxyHeaderFor(2, "198.51.100.15")),
			"GET / HTTP/1.1\r\nHost: localhost\r\n"+strings.Repeat("X-Filler: "+strings.Repeat("f", 100)+"\r\n", 60)+"\r\n"...)}, "198.51.100.15"},
		// LOCAL: the balancer's own connection (a health check), so
		// the balancer is the client.
		{"v2 LOCAL", [][]byte{append(header(local), get...)}, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mark := hs.mark()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			for _, b := range tt.send {
				if _, err := c.Write(b); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			if !strings.HasPrefix(string(got), "HTTP/1.0 400 ") || !strings.Contains(string(got), "https://") {
				t.Fatalf("answered %q, want the 400 that says to use https", got)
			}
			ev := hs.wait(t, mark, "the handshake event", func(HandshakeEvent) bool { return true })
			if ev.Reason != reasonNotTLS || !strings.HasPrefix(ev.Remote(), tt.client+":") {
				t.Errorf("recorded %q from %s, want %q from %s", ev.Reason, ev.Remote(), reasonNotTLS, tt.client)
			}
		})
	}
	if got := ts.metricSum("pqedge_handshake_failures_total", `reason="not_tls"`); got != float64(len(tests)) {
		t.Errorf("not_tls counted %v, want %d", got, len(tests))
	}
}
