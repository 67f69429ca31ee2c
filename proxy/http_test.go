package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoHeaders answers with the request's Host and headers as JSON.
var echoHeaders = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := r.Header.Clone()
	h.Set("X-Seen-Host", r.Host)
	json.NewEncoder(w).Encode(h)
})

func TestHTTPProxyHeaders(t *testing.T) {
	facts := HandshakeFacts{Group: "X25519MLKEM768", Signature: "mldsa65", Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", PQ: true}
	tests := []struct {
		name    string
		facts   *HandshakeFacts
		names   HeaderNames
		spoof   map[string]string // client-sent headers
		want    map[string]string // "" means absent
		upstrem func(t *testing.T) string
	}{
		{
			name:  "facts forwarded, spoofed copies replaced",
			facts: &facts,
			spoof: map[string]string{"PQEdge-TLS-Group": "x25519", "PQEdge-TLS-PQ": "false", "X-Forwarded-For": "6.6.6.6"},
			want: map[string]string{
				"PQEdge-TLS-Group": "X25519MLKEM768", "PQEdge-TLS-PQ": "true", "PQEdge-TLS-Signature": "mldsa65",
				"PQEdge-TLS-Version": "TLS 1.3", "PQEdge-TLS-Cipher": "TLS_AES_128_GCM_SHA256",
				"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Seen-Host": "public.example",
				"X-Forwarded-Host": "public.example",
			},
		},
		{
			name:  "no TLS: spoofed facts removed, none added",
			spoof: map[string]string{"PQEdge-TLS-Group": "X25519MLKEM768", "PQEdge-TLS-PQ": "true", "pqedge-tls-cipher": "x"},
			want:  map[string]string{"PQEdge-TLS-Group": "", "PQEdge-TLS-PQ": "", "PQEdge-TLS-Cipher": "", "X-Forwarded-For": "127.0.0.1"},
		},
		{
			name:  "custom names, classical handshake; PQEdge-* still pqedge's",
			facts: &HandshakeFacts{Group: "x25519", Version: "TLS 1.3", PQ: false},
			names: HeaderNames{Group: "X-TLS-Group", PQ: "x-tls-pq"},
			spoof: map[string]string{"X-TLS-Group": "X25519MLKEM768", "PQEdge-TLS-Group": "spoofed"},
			want: map[string]string{
				"X-TLS-Group": "x25519", "X-TLS-PQ": "false", "PQEdge-TLS-Version": "TLS 1.3",
				"PQEdge-TLS-Signature": "", "PQEdge-TLS-Group": "",
			},
		},
		{
			name:    "unix socket upstream",
			facts:   &facts,
			want:    map[string]string{"PQEdge-TLS-Group": "X25519MLKEM768", "X-Seen-Host": "public.example"},
			upstrem: func(t *testing.T) string { return unixHTTPUpstream(t, echoHeaders) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := ""
			if tt.upstrem != nil {
				up = tt.upstrem(t)
			} else {
				up = httpUpstream(t, echoHeaders)
			}
			pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}})
			px := NewHTTPProxy(pool, HTTPOptions{Headers: tt.names, Logger: quietLogger})
			var info *RequestInfo
			front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				if tt.facts != nil {
					ctx = WithHandshakeFacts(ctx, *tt.facts)
				}
				ctx, info = WithRequestInfo(ctx)
				px.ServeHTTP(w, r.WithContext(ctx))
			})
			url := proxyServer(t, front)
			req, _ := http.NewRequest("GET", url+"/x", nil)
			req.Host = "public.example"
			for k, v := range tt.spoof {
				req.Header.Set(k, v)
			}
			resp, err := testClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got http.Header
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if v := got.Get(k); v != want {
					t.Errorf("upstream saw %s = %q, want %q", k, v, want)
				}
				if want == "" && len(got.Values(k)) > 0 {
					t.Errorf("upstream saw %s = %q, want absent", k, got.Values(k))
				}
			}
			if info.Upstream != up || info.Err != nil {
				t.Errorf("RequestInfo = %+v, want upstream %q and no error", *info, up)
			}
		})
	}
}

func TestHTTPProxyErrors(t *testing.T) {
	tests := []struct {
		name       string
		addrs      func(t *testing.T) []string
		opts       HTTPOptions
		wantStatus int
		wantBody   string
	}{
		{
			name:       "upstream down",
			addrs:      func(t *testing.T) []string { return []string{deadAddr(t)} },
			wantStatus: http.StatusBadGateway,
			wantBody:   "502 Bad Gateway: upstream pool \"app\" unreachable\n",
		},
		{
			name:       "unix socket missing",
			addrs:      func(t *testing.T) []string { return []string{"unix:" + t.TempDir() + "/none.sock"} },
			wantStatus: http.StatusBadGateway,
			wantBody:   "502 Bad Gateway: upstream pool \"app\" unreachable\n",
		},
		{
			name:       "upstream accepts and never answers",
			addrs:      func(t *testing.T) []string { return []string{silentUpstream(t)} },
			opts:       HTTPOptions{ResponseHeaderTimeout: 200 * time.Millisecond},
			wantStatus: http.StatusGatewayTimeout,
			wantBody:   "504 Gateway Timeout: upstream pool \"app\" did not answer in time\n",
		},
		{
			name: "upstream closes mid-request",
			addrs: func(t *testing.T) []string {
				return []string{httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					c, _, _ := http.NewResponseController(w).Hijack()
					c.Close()
				}))}
			},
			wantStatus: http.StatusBadGateway,
			wantBody:   "502 Bad Gateway: upstream pool \"app\" failed\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newTestPool(t, PoolOptions{Addresses: tt.addrs(t), Health: HealthOptions{Interval: -1}, MaxFails: 100})
			tt.opts.Logger = quietLogger
			url := proxyServer(t, NewHTTPProxy(pool, tt.opts))
			status, body := get(t, testClient(), url+"/")
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestHTTPProxyNoHealthyUpstream(t *testing.T) {
	changes := make(chan bool, 10)
	dead := deadAddr(t)
	pool := newTestPool(t, PoolOptions{
		Addresses: []string{dead}, MaxFails: 1, EjectFor: time.Hour, Health: HealthOptions{Interval: -1},
		OnHealthChange: func(pool, addr string, healthy bool) {
			if pool == "app" && addr == dead {
				changes <- healthy
			}
		},
	})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
	c := testClient()
	if status, _ := get(t, c, url); status != http.StatusBadGateway {
		t.Fatalf("first request: status %d, want 502", status)
	}
	status, body := get(t, c, url)
	if want := "503 Service Unavailable: upstream pool \"app\" has no healthy upstream\n"; status != 503 || body != want {
		t.Errorf("after ejection got %d %q, want 503 %q", status, body, want)
	}
	if h := <-changes; h {
		t.Errorf("OnHealthChange reported healthy=true, want false")
	}
	st := pool.Upstreams()
	if len(st) != 1 || st[0].Healthy || !st[0].Ejected {
		t.Errorf("Upstreams() = %+v, want one ejected unhealthy upstream", st)
	}
}

func TestHTTPProxyEjectsDeadUpstream(t *testing.T) {
	live := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	dead := deadAddr(t)
	pool := newTestPool(t, PoolOptions{Addresses: []string{dead, live}, MaxFails: 1, EjectFor: time.Hour, Health: HealthOptions{Interval: -1}})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
	c := testClient()
	failures := 0
	for i := range 20 {
		status, body := get(t, c, url)
		switch {
		case status == http.StatusBadGateway && i < 2 && failures == 0:
			failures++ // the dead upstream's one allowed failure
		case status != http.StatusOK || body != "ok":
			t.Fatalf("request %d: got %d %q after %d failures", i, status, body, failures)
		}
	}
	for _, u := range pool.Upstreams() {
		if want := u.Addr == live; u.Healthy != want {
			t.Errorf("%s healthy = %v, want %v", u.Addr, u.Healthy, want)
		}
	}
}

func TestHTTPProxyWebSocket(t *testing.T) {
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello from upstream\n")
		// Echo lines upper-cased until the client closes.
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(c, strings.ToUpper(line))
		}
	}))
	pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second)) // a broken proxy fails the test instead of hanging it
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "hello from upstream\n" {
		t.Fatalf("upstream to client: %q, %v", line, err)
	}
	for _, msg := range []string{"ping\n", "second message\n"} {
		io.WriteString(c, msg)
		if line, err := br.ReadString('\n'); err != nil || line != strings.ToUpper(msg) {
			t.Fatalf("client to upstream and back: %q, %v", line, err)
		}
	}
}

func TestHTTPProxyProbeOneInFlight(t *testing.T) {
	release := make(chan struct{})
	inFlight, maxInFlight, probes := 0, 0, 0
	var mu = make(chan struct{}, 1)
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			mu <- struct{}{}
			inFlight++
			probes++
			maxInFlight = max(maxInFlight, inFlight)
			<-mu
			<-release
			mu <- struct{}{}
			inFlight--
			<-mu
			return
		}
		// Every data request fails at the transport level.
		c, _, _ := http.NewResponseController(w).Hijack()
		c.Close()
	}))
	pool := newTestPool(t, PoolOptions{Addresses: []string{up}, MaxFails: 100, Health: HealthOptions{Interval: -1, Path: "/healthz", Timeout: 10 * time.Second}})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
	c := testClient()
	for range 5 {
		if status, _ := get(t, c, url+"/data"); status != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", status)
		}
	}
	waitFor(t, "the probe to reach the upstream", func() bool {
		mu <- struct{}{}
		defer func() { <-mu }()
		return probes > 0
	})
	close(release)
	waitFor(t, "the probe to finish", func() bool { return !pool.ups[0].state.probing.Load() })
	mu <- struct{}{}
	defer func() { <-mu }()
	if maxInFlight != 1 || probes != 1 {
		t.Errorf("probes = %d, max in flight = %d; want 1 and 1 (five failures, one probe)", probes, maxInFlight)
	}
}

func TestHTTPProxyRoundRobinKeepAlive(t *testing.T) {
	// Each upstream names itself and counts the connections it accepted.
	type counted struct {
		addr  string
		conns atomic.Int32
	}
	ups := make([]*counted, 3)
	var addrs []string
	for i := range ups {
		u := &counted{}
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, u.addr) }))
		s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				u.conns.Add(1)
			}
		}
		s.Start()
		t.Cleanup(s.Close)
		u.addr = s.Listener.Addr().String()
		ups[i] = u
		addrs = append(addrs, u.addr)
	}
	pool := newTestPool(t, PoolOptions{Addresses: addrs, Health: HealthOptions{Interval: -1}})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
	c := testClient()
	const rounds = 4
	for i := range rounds * len(addrs) {
		_, body := get(t, c, url)
		if want := addrs[i%len(addrs)]; body != want {
			t.Fatalf("request %d served by %q, want %q", i, body, want)
		}
	}
	for _, u := range ups {
		if n := u.conns.Load(); n != 1 {
			t.Errorf("upstream %s accepted %d connections for %d sequential requests, want 1 (keep-alive)", u.addr, n, rounds)
		}
	}
}

func TestHTTPProxyCountsFailures(t *testing.T) {
	tests := []struct {
		name string
		addr func(t *testing.T) string
		opts HTTPOptions
	}{
		{"dial error", deadAddr, HTTPOptions{}},
		{"response timeout", silentUpstream, HTTPOptions{ResponseHeaderTimeout: 100 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log healthLog
			pool := newTestPool(t, PoolOptions{Addresses: []string{tt.addr(t)}, MaxFails: 2, EjectFor: time.Hour, Health: HealthOptions{Interval: -1}, OnHealthChange: log.hook})
			tt.opts.Logger = quietLogger
			url := proxyServer(t, NewHTTPProxy(pool, tt.opts))
			c := testClient()
			get(t, c, url)
			if st := pool.Upstreams()[0]; st.ConsecutiveFailures != 1 || !st.Healthy {
				t.Fatalf("after one failure: %+v, want 1 failure and still healthy", st)
			}
			get(t, c, url)
			if st := pool.Upstreams()[0]; !st.Ejected {
				t.Fatalf("after MaxFails failures: %+v, want ejected", st)
			}
			if status, _ := get(t, c, url); status != http.StatusServiceUnavailable {
				t.Errorf("request to an ejected pool: status %d, want 503", status)
			}
			waitFor(t, "OnHealthChange", func() bool { return len(log.get()) == 1 })
		})
	}
}

func TestHTTPProxyUpstreamStallsBody(t *testing.T) {
	stop := make(chan struct{})
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "partial")
		http.NewResponseController(w).Flush()
		<-stop // never send the rest
	}))
	t.Cleanup(func() { close(stop) }) // runs before the upstream's Close
	pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{UpstreamIdleTimeout: 100 * time.Millisecond, Logger: quietLogger}))
	// The proxy aborts the response when the upstream stalls: the client
	// sees the connection end, either before the buffered headers went
	// out or in the middle of the body, and never its own timeout.
	resp, err := testClient().Get(url)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		body, err = io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("read a complete %q from a stalled upstream", body)
		}
	}
	if isTimeout(err) {
		t.Errorf("client timed out (%v); want the proxy to cut the stalled response", err)
	}
}
