package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

func TestParseHTTPSUpstream(t *testing.T) {
	tests := []struct {
		addr                string
		dialTo, key, host   string
		wantErr             string // substring; "" for none
		wantTLS, wantPlainE bool
	}{
		{addr: "https://Origin.example:8443", dialTo: "Origin.example:8443", key: "origin.example:8443", host: "Origin.example", wantTLS: true},
		{addr: "HTTPS://origin.example", dialTo: "origin.example:443", key: "origin.example:443", host: "origin.example", wantTLS: true},
		{addr: "https://[2001:db8::1]:8443", dialTo: "[2001:db8::1]:8443", key: "[2001:db8::1]:8443", host: "2001:db8::1", wantTLS: true},
		{addr: "https://[2001:db8::1]", dialTo: "[2001:db8::1]:443", key: "[2001:db8::1]:443", host: "2001:db8::1", wantTLS: true},
		{addr: "https://2001:db8::1", wantErr: "IPv6 addresses in brackets"},
		{addr: "https://origin.example:443/app", wantErr: `without "/app"`},
		{addr: "https://user@origin.example:443", wantErr: `without "@origin.example:443"`},
		{addr: "https://origin.example:0", wantErr: "not a number from 1 to 65535"},
		{addr: "https://origin.example:https", wantErr: "not a number from 1 to 65535"},
		{addr: "https://", wantErr: "want host:port"},
		{addr: "http://origin.example:80", wantErr: "without http://"},
		{addr: "127.0.0.1:3000", dialTo: "127.0.0.1:3000", key: "127.0.0.1:3000", host: "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			u, err := parseUpstream(tt.addr, 0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseUpstream = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.dialTo != tt.dialTo || u.key != tt.key || u.host != tt.host || (u.tls != nil) != tt.wantTLS || u.addr != tt.addr {
				t.Errorf("got dialTo %q key %q host %q tls %v, want %q %q %q %v", u.dialTo, u.key, u.host, u.tls != nil, tt.dialTo, tt.key, tt.host, tt.wantTLS)
			}
		})
	}
}

// TestTLSPoolShapes: a pool's upstreams are all https:// or none, TLS
// settings need https:// upstreams, and a stream proxy refuses a TLS pool.
func TestTLSPoolShapes(t *testing.T) {
	tests := []struct {
		name    string
		opts    PoolOptions
		wantErr string
	}{
		{"mixed", PoolOptions{Addresses: []string{"https://a.example:443", "b.example:80"}}, "mix https:// and plain"},
		{"mixed with unix", PoolOptions{Addresses: []string{"unix:/run/a.sock", "https://a.example"}}, "mix https:// and plain"},
		{"settings without https", PoolOptions{Addresses: []string{"a.example:80"}, TLS: UpstreamTLS{PQRequired: true}}, "no upstream is https://"},
		{"same origin twice", PoolOptions{Addresses: []string{"https://a.example", "https://A.example:443"}}, "listed twice"},
		{"all https", PoolOptions{Addresses: []string{"https://a.example", "https://b.example:8443"}, TLS: UpstreamTLS{PQRequired: true}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Health.Interval = -1
			tt.opts.Logger = quietLogger
			p, err := NewPool("app", tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewPool = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if _, err := NewStreamProxy(p, StreamOptions{}); err == nil || !strings.Contains(err.Error(), "https://") {
				t.Errorf("NewStreamProxy on an https pool = %v, want a refusal", err)
			}
		})
	}
}

// originCall is what one request through the proxy saw.
type originCall struct {
	status int
	body   string
	info   RequestInfo
}

// originProxy serves an HTTPProxy for pool on loopback and returns a
// function making one request through it.
func originProxy(t *testing.T, pool *Pool, log *logBuffer) func() originCall {
	px := NewHTTPProxy(pool, HTTPOptions{Logger: log.logger()})
	// The client may read the whole response before the handler returns:
	// the info comes through a channel once it has.
	infos := make(chan RequestInfo, 1)
	url := proxyServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, info := WithRequestInfo(r.Context())
		px.ServeHTTP(w, r.WithContext(ctx))
		infos <- *info
	}))
	c := testClient()
	return func() originCall {
		status, body := get(t, c, url+"/")
		return originCall{status, body, <-infos}
	}
}

// TestOriginTLS sends requests to Go HTTPS origins through https://
// upstreams and checks what each side of the origin leg negotiated, that
// keep-alive connections are not handshaken again, and that refused
// handshakes answer 502, count against the upstream and log why.
func TestOriginTLS(t *testing.T) {
	pki := newTestPKI(t, "origin CA")
	other := newTestPKI(t, "another CA")
	hybrid := newTLSOrigin(t, pki, []tls.CurveID{tls.X25519MLKEM768}, nil)
	classical := newTLSOrigin(t, pki, []tls.CurveID{tls.X25519, tls.CurveP256}, nil)
	trust := []*x509.Certificate{pki.root}
	tests := []struct {
		name   string
		origin *tlsOrigin
		host   string // the upstream's host; default 127.0.0.1
		tls    UpstreamTLS
		// On success: the group and SNI both sides report.
		wantGroup, wantSNI string
		wantPQ             bool
		// On failure: the class, and a part of the logged reason.
		wantReason, wantLog string
	}{
		{name: "hybrid origin", origin: hybrid, tls: UpstreamTLS{RootCAs: trust}, wantGroup: "X25519MLKEM768", wantPQ: true},
		{name: "classical origin served classically", origin: classical, tls: UpstreamTLS{RootCAs: trust}, wantGroup: "x25519"},
		{name: "pq_required, hybrid origin", origin: hybrid, tls: UpstreamTLS{RootCAs: trust, PQRequired: true}, wantGroup: "X25519MLKEM768", wantPQ: true},
		{name: "pq_required refuses a classical origin", origin: classical, tls: UpstreamTLS{RootCAs: trust, PQRequired: true},
			wantReason: TLSFailureNoCommonGroup, wantLog: "pq_required: the origin accepted none of the post-quantum groups offered (X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024)"},
		{name: "SNI by host name", origin: hybrid, host: "localhost", tls: UpstreamTLS{RootCAs: trust}, wantGroup: "X25519MLKEM768", wantPQ: true, wantSNI: "localhost"},
		{name: "configured SNI", origin: hybrid, tls: UpstreamTLS{RootCAs: trust, ServerName: "origin.test"}, wantGroup: "X25519MLKEM768", wantPQ: true, wantSNI: "origin.test"},
		{name: "certificate does not cover the server name", origin: hybrid, tls: UpstreamTLS{RootCAs: trust, ServerName: "elsewhere.test"},
			wantReason: TLSFailureCertificate, wantLog: "certificate is valid for origin.test, localhost, not elsewhere.test"},
		{name: "another CA", origin: hybrid, tls: UpstreamTLS{RootCAs: []*x509.Certificate{other.root}},
			wantReason: TLSFailureCertificate, wantLog: "certificate signed by unknown authority"},
		{name: "system roots", origin: hybrid, wantReason: TLSFailureCertificate, wantLog: "did not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.origin.addr
			if tt.host != "" {
				addr = strings.Replace(addr, "127.0.0.1", tt.host, 1)
			}
			var mu sync.Mutex
			var hs []UpstreamHandshake
			pool := newTestPool(t, PoolOptions{
				Addresses: []string{"https://" + addr}, TLS: tt.tls, MaxFails: 1, EjectFor: time.Hour,
				Health:         HealthOptions{Interval: -1},
				OnTLSHandshake: func(h UpstreamHandshake) { mu.Lock(); hs = append(hs, h); mu.Unlock() },
			})
			log := &logBuffer{}
			call := originProxy(t, pool, log)
			before, _ := tt.origin.seen()
			if tt.wantReason != "" {
				got := call()
				if got.status != http.StatusBadGateway || !strings.Contains(got.body, "TLS handshake failed") {
					t.Errorf("got %d %q, want 502 ... TLS handshake failed", got.status, got.body)
				}
				if got.info.UpstreamTLS != nil {
					t.Errorf("a failed handshake reported facts %+v", got.info.UpstreamTLS)
				}
				if !log.contains("upstream TLS handshake failed", "reason="+tt.wantReason, tt.wantLog) {
					t.Errorf("log lacks the reason %s and %q:\n%s", tt.wantReason, tt.wantLog, log)
				}
				if st := pool.Upstreams()[0]; !st.Ejected {
					t.Errorf("upstream not ejected after its handshake failed: %+v", st)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(hs) != 1 || hs[0].Err == nil || hs[0].Err.Reason != tt.wantReason || hs[0].Pool != "app" || hs[0].Upstream != "https://"+addr {
					t.Errorf("OnTLSHandshake saw %+v, want one failure of class %s", hs, tt.wantReason)
				}
				return
			}
			for i := range 3 {
				got := call()
				want := "group=" + tt.wantGroup + " sni=" + tt.wantSNI + " client=none"
				if got.status != http.StatusOK || got.body != want {
					t.Fatalf("request %d: got %d %q, want 200 %q", i, got.status, got.body, want)
				}
				f := got.info.UpstreamTLS
				if f == nil || f.Group != tt.wantGroup || f.PQ != tt.wantPQ || f.Version != "TLS 1.3" || f.ServerName != tt.wantSNI || f.ALPN != "http/1.1" {
					t.Errorf("request %d: RequestInfo.UpstreamTLS = %+v, want group %s pq %v sni %q over TLS 1.3, http/1.1", i, f, tt.wantGroup, tt.wantPQ, tt.wantSNI)
				}
			}
			// Three requests, one connection: one handshake on each side.
			after, _ := tt.origin.seen()
			mu.Lock()
			defer mu.Unlock()
			if after-before != 1 || len(hs) != 1 {
				t.Errorf("3 requests made %d handshakes (origin's count) and %d reports, want 1 each", after-before, len(hs))
			}
			if len(hs) > 0 && (hs[0].Err != nil || hs[0].Facts.Group != tt.wantGroup || hs[0].Facts.PQ != tt.wantPQ) {
				t.Errorf("OnTLSHandshake saw %+v", hs[0])
			}
		})
	}
}

// TestOriginClientCertificate: an origin that requires a client
// certificate gets the pool's, classical or ML-DSA (through the circl
// signer, as the server wires it), and refuses a pool without one.
func TestOriginClientCertificate(t *testing.T) {
	pki := newTestPKI(t, "origin CA")
	clients := newTestPKI(t, "client CA")
	origin := newTLSOrigin(t, pki, nil, clients.pool())
	mldsa := clients.issue(t, "mldsa-client", certs.AlgMLDSA44, x509.ExtKeyUsageClientAuth)
	if err := certs.WrapSigner(mldsa, certs.SignerCircl); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cert       *tls.Certificate
		wantClient string // "" for a refused handshake
	}{
		{"ecdsa", clients.issue(t, "ecdsa-client", certs.AlgECDSAP256, x509.ExtKeyUsageClientAuth), "ecdsa-client"},
		{"mldsa44", mldsa, "mldsa-client"},
		{"none", nil, ""},
		{"server certificate", pki.issue(t, "not-a-client", certs.AlgECDSAP256, x509.ExtKeyUsageServerAuth), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newTestPool(t, PoolOptions{
				Addresses: []string{"https://" + origin.addr}, Health: HealthOptions{Interval: -1},
				TLS: UpstreamTLS{RootCAs: []*x509.Certificate{pki.root}, Certificate: tt.cert},
			})
			log := &logBuffer{}
			got := originProxy(t, pool, log)()
			if tt.wantClient == "" {
				if got.status != http.StatusBadGateway || !log.contains("reason="+TLSFailureClientCertificate) {
					t.Errorf("got %d %q, want 502 and a client_certificate failure logged:\n%s", got.status, got.body, log)
				}
				return
			}
			if want := "client=" + tt.wantClient; got.status != http.StatusOK || !strings.HasSuffix(got.body, want) {
				t.Errorf("got %d %q, want 200 ... %s", got.status, got.body, want)
			}
		})
	}
}

// TestOriginHealthChecks: active checks of an https:// upstream run the TLS
// handshake under the pool's settings, so pq_required takes a classical
// origin out before any request reaches it, with the reason.
func TestOriginHealthChecks(t *testing.T) {
	pki := newTestPKI(t, "origin CA")
	hybrid := newTLSOrigin(t, pki, []tls.CurveID{tls.X25519MLKEM768}, nil)
	classical := newTLSOrigin(t, pki, []tls.CurveID{tls.X25519}, nil)
	var mu sync.Mutex
	var changes []UpstreamChange
	reg := NewRegistry(RegistryOptions{Logger: quietLogger, OnChange: func(c UpstreamChange) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	}})
	defer reg.Close()
	pool := newTestPool(t, PoolOptions{
		Addresses: []string{"https://" + hybrid.addr, "https://" + classical.addr}, Registry: reg,
		TLS:    UpstreamTLS{RootCAs: []*x509.Certificate{pki.root}, PQRequired: true},
		Health: HealthOptions{Interval: 20 * time.Millisecond, Path: "/", UnhealthyThreshold: 1},
	})
	waitFor(t, "the classical origin to become unusable", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(changes) > 0
	})
	mu.Lock()
	c := changes[0]
	mu.Unlock()
	if c.Addr != "https://"+classical.addr || c.Usable || !strings.Contains(c.Reason, "pq_required") {
		t.Errorf("change %+v, want the classical origin unusable because of pq_required", c)
	}
	waitFor(t, "checks of the hybrid origin", func() bool { n, _ := hybrid.seen(); return n >= 2 })
	if n, g := hybrid.seen(); g != tls.X25519MLKEM768 {
		t.Errorf("the hybrid origin saw %d checks, the last over %v", n, g)
	}
	if st := pool.Upstreams(); !st[0].Healthy || st[1].Healthy {
		t.Errorf("states %+v, want the hybrid origin healthy and the classical one not", st)
	}
}

// FuzzParseUpstream: an address either is refused with an error that quotes
// it, or parses into a dialable host:port (a port from 1 to 65535) whose
// transport key is the lower-cased form, and an https:// one parses the
// same again from its dial address.
func FuzzParseUpstream(f *testing.F) {
	data, err := os.ReadFile("testdata/upstreams.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			f.Add(line)
		}
	}
	f.Fuzz(func(t *testing.T, a string) {
		u, err := parseUpstream(a, 0)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(a)) {
				t.Fatalf("error %q does not quote the address %q", err, a)
			}
			return
		}
		if u.network == "unix" {
			if u.tls != nil || !strings.HasPrefix(a, "unix:/") {
				t.Fatalf("%q: unix upstream %+v", a, u)
			}
			return
		}
		host, port, err := net.SplitHostPort(u.dialTo)
		if err != nil || host != u.host || u.key != net.JoinHostPort(strings.ToLower(host), port) {
			t.Fatalf("%q: dialTo %q host %q key %q (%v)", a, u.dialTo, u.host, u.key, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("%q: port %q", a, port)
		}
		if _, https := cutScheme(a, "https://"); https != (u.tls != nil) {
			t.Fatalf("%q: tls = %v", a, u.tls != nil)
		}
		if u.tls != nil {
			again, err := parseUpstream("https://"+u.dialTo, 0)
			if err != nil || again.dialTo != u.dialTo || again.key != u.key {
				t.Fatalf("%q -> %q does not parse the same: %+v, %v", a, u.dialTo, again, err)
			}
		}
	})
}

// TestOriginTLSTimeout: an origin that accepts the connection and never
// answers the ClientHello fails the handshake within DialTimeout (502,
// reason timeout) instead of holding the request.
func TestOriginTLSTimeout(t *testing.T) {
	var got []UpstreamHandshake
	var mu sync.Mutex
	pool := newTestPool(t, PoolOptions{
		Addresses: []string{"https://" + silentUpstream(t)}, DialTimeout: 200 * time.Millisecond,
		Health:         HealthOptions{Interval: -1},
		OnTLSHandshake: func(h UpstreamHandshake) { mu.Lock(); got = append(got, h); mu.Unlock() },
	})
	log := &logBuffer{}
	call := originProxy(t, pool, log)()
	if call.status != http.StatusBadGateway || !log.contains("upstream TLS handshake failed", "reason="+TLSFailureTimeout) {
		t.Errorf("got %d %q, want 502 and a timeout logged:\n%s", call.status, call.body, log)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Err == nil || got[0].Err.Reason != TLSFailureTimeout {
		t.Errorf("OnTLSHandshake saw %+v, want one timeout", got)
	}
	if st := pool.Upstreams()[0]; st.ConsecutiveFailures != 1 {
		t.Errorf("the timeout did not count against the upstream: %+v", st)
	}
}
