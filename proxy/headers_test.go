package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTrustedHeaderSpellings sends client copies of the headers pqedge
// sets, spelled every way CGI-style servers fold together, over raw
// HTTP/1.1: none reaches the upstream, which sees pqedge's own values.
func TestTrustedHeaderSpellings(t *testing.T) {
	const spoofed = "6.6.6.6"
	spoofs := []string{
		"X_Forwarded_For", "x-forwarded-for", "X_FORWARDED_HOST", "x_forwarded_proto",
		"X-Real-IP", "x_real_ip", "Forwarded", "FORWARDED",
		"PQEdge_TLS_PQ", "pqedge-tls-pq", "PQEDGE_TLS_SIGNATURE", "PQEdge-TLS-Group", "pqedge_tls_group",
		"PQEdge-Anything-Later", "X-TLS-Group", "x_tls_group",
	}
	facts := HandshakeFacts{Group: "X25519MLKEM768", Signature: "mldsa65", Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", PQ: true}
	tests := []struct {
		name             string
		allowUnderscores bool
		fooBar           string // what the upstream sees of "Foo_Bar: kept"
	}{
		{name: "underscores dropped (default)", fooBar: ""},
		{name: "underscores allowed", allowUnderscores: true, fooBar: "kept"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newTestPool(t, PoolOptions{Addresses: []string{httpUpstream(t, echoHeaders)}, Health: HealthOptions{Interval: -1}})
			px := NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger, AllowUnderscoreHeaders: tt.allowUnderscores,
				Headers: HeaderNames{Group: "X-TLS-Group"}})
			front := proxyServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				px.ServeHTTP(w, r.WithContext(WithHandshakeFacts(r.Context(), facts)))
			}))
			var req strings.Builder
			req.WriteString("GET /h HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\nFoo_Bar: kept\r\n")
			for _, s := range spoofs {
				req.WriteString(s + ": " + spoofed + "\r\n")
			}
			req.WriteString("\r\n")
			resps, bodies, _ := rawExchange(t, hostOf(front), req.String(), 10*time.Second)
			if len(resps) != 1 || resps[0].StatusCode != 200 {
				t.Fatalf("statuses %v", statuses(resps))
			}
			var got http.Header
			if err := json.Unmarshal([]byte(bodies[0]), &got); err != nil {
				t.Fatal(err)
			}
			for name, vs := range got {
				for _, v := range vs {
					if strings.Contains(v, spoofed) {
						t.Errorf("upstream saw %s: %s", name, v)
					}
				}
			}
			want := map[string]string{
				"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-Host": "public.example",
				"X-Forwarded-Proto": "http", "Forwarded": `for=127.0.0.1;proto=http;host="public.example"`,
				"X-Tls-Group": "X25519MLKEM768", "Pqedge-Tls-Pq": "true", "Pqedge-Tls-Signature": "mldsa65",
				"Pqedge-Tls-Group": "",
			}
			for k, v := range want {
				if g := got.Get(k); g != v || v == "" && len(got.Values(k)) > 0 {
					t.Errorf("upstream saw %s = %q, want %q", k, got.Values(k), v)
				}
			}
			if g := got.Get("Foo_bar"); g != tt.fooBar {
				t.Errorf("upstream saw Foo_Bar = %q, want %q", g, tt.fooBar)
			}
		})
	}
}

func TestForwardedIPv6(t *testing.T) {
	pool := newTestPool(t, PoolOptions{Addresses: []string{httpUpstream(t, echoHeaders)}, Health: HealthOptions{Interval: -1}})
	px := NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger})
	front := proxyServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = "[2001:db8::1]:4711" // as net/http spells an IPv6 peer
		px.ServeHTTP(w, r)
	}))
	resps, bodies, _ := rawExchange(t, hostOf(front), "GET / HTTP/1.1\r\nHost: a.example:8443\r\nConnection: close\r\n\r\n", 10*time.Second)
	if len(resps) != 1 {
		t.Fatalf("statuses %v", statuses(resps))
	}
	var got http.Header
	json.Unmarshal([]byte(bodies[0]), &got)
	// RFC 7239 Section 6: IPv6 bracketed and quoted.
	if g, w := got.Get("Forwarded"), `for="[2001:db8::1]";proto=http;host="a.example:8443"`; g != w {
		t.Errorf("Forwarded = %q, want %q", g, w)
	}
	if g := got.Get("X-Real-Ip"); g != "2001:db8::1" {
		t.Errorf("X-Real-IP = %q", g)
	}
}
