package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
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
		// PHP folds "." into "_" too; frameworks trust the rest of the
		// X-Forwarded-* family.
		"X.Forwarded.For", "PQEdge.TLS.PQ", "x.real.ip", "X-Forwarded-Port", "X_Forwarded_Prefix",
		"X-Forwarded-Ssl", "X-Forwarded-Scheme",
		// Path overrides: an application honouring them routes on
		// the client's path, not the one pqedge normalised and routed.
		"X-Original-URL", "x_rewrite_url",
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

// TestConnectionHeaders: the facts stored once per connection
// (http.Server.ConnContext, as pqedge's server does) reach every request
// on it, and the forwarded headers follow each request's own Host.
func TestConnectionHeaders(t *testing.T) {
	pool := newTestPool(t, PoolOptions{Addresses: []string{httpUpstream(t, echoHeaders)}, Health: HealthOptions{Interval: -1}})
	px := NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger})
	front := httptest.NewUnstartedServer(px)
	front.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return WithHandshakeFacts(ctx, HandshakeFacts{Group: "X25519MLKEM768", Version: "TLS 1.3", PQ: true})
	}
	front.Start()
	t.Cleanup(front.Close)
	const req = "GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n"
	resps, bodies, _ := rawExchange(t, hostOf(front.URL), fmt.Sprintf(req, "a.example", "")+fmt.Sprintf(req, "a.example", "")+
		fmt.Sprintf(req, "b.example", "Connection: close\r\n"), 10*time.Second)
	if len(resps) != 3 {
		t.Fatalf("statuses %v", statuses(resps))
	}
	for i, host := range []string{"a.example", "a.example", "b.example"} {
		var got http.Header
		if err := json.Unmarshal([]byte(bodies[i]), &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{
			"X-Forwarded-Host": host, "Forwarded": `for=127.0.0.1;proto=http;host="` + host + `"`,
			"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-Proto": "http",
			"Pqedge-Tls-Group": "X25519MLKEM768", "Pqedge-Tls-Version": "TLS 1.3", "Pqedge-Tls-Pq": "true",
		} {
			if vs := got.Values(k); len(vs) != 1 || vs[0] != v {
				t.Errorf("request %d (Host %s): upstream saw %s = %q, want %q", i+1, host, k, vs, v)
			}
		}
		// A fact that is empty is not sent at all.
		if vs := got.Values("Pqedge-Tls-Signature"); len(vs) > 0 {
			t.Errorf("request %d: upstream saw PQEdge-TLS-Signature = %q for a handshake without one", i+1, vs)
		}
	}
}

// TestHeaderPolicyFolding: the policy drops a name exactly when its CGI
// folding (foldName) is one of pqedge's names or starts with "pqedge-" or
// "x-forwarded-", or it has a byte other than a letter, digit, "-" or
// "_", and names with "_" unless they are allowed.
func TestHeaderPolicyFolding(t *testing.T) {
	names := HeaderNames{Group: "X-TLS-Group"}
	names.setDefaults()
	p := newHeaderPolicy(names, true)
	strict := newHeaderPolicy(names, false)
	for _, tc := range []struct {
		name   string
		drops  bool // with underscores allowed
		strict bool // with underscores dropped
	}{
		{"X-Forwarded-For", true, true},
		{"x_FORWARDED_for", true, true},
		{"X-Forwarded-Fo", true, true},
		{"X-Forwarded-Forx", true, true},
		{"X-Forwarded-Port", true, true},
		{"x_forwarded_ssl", true, true},
		{"X-Forwarded", false, false},
		{"X-Original-URL", true, true},
		{"x_original_url", true, true},
		{"X-Rewrite-Url", true, true},
		{"X-Original-Host", false, false},
		{"X.Forwarded.For", true, true},
		{"Pqedge.Tls.Pq", true, true},
		{"X-Real-Ip.", true, true},
		{"Foo.Bar", true, true},
		{"Foo~Bar", true, true},
		{"Foo+Bar", true, true},
		{"X-Custom-9", false, false},
		{"Forwarded", true, true},
		{"X-Real-Ip", true, true},
		{"X-Tls-Group", true, true},
		{"x_tls_group", true, true},
		{"Pqedge-Tls-Group", true, true},
		{"PQEDGE_anything", true, true},
		{"Pqedge", false, false},
		{"Foo_Bar", false, true},
		{"Content-Type", false, false},
		{"X-Forwarded-F\xc3\xb6r", true, true},
		{"Caf\xc3\xa9", true, true},
		{"", false, false},
	} {
		f := foldName(tc.name)
		want := slices.Contains(p.dropped, f) || strings.HasPrefix(f, pqedgePrefix) || strings.HasPrefix(f, forwardedPrefix) ||
			strings.ContainsFunc(f, func(r rune) bool { return !(r == '-' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9') })
		if want != tc.drops {
			t.Fatalf("table error for %q: foldName says %v", tc.name, want)
		}
		if got := p.drops(tc.name); got != tc.drops {
			t.Errorf("drops(%q) = %v, want %v (underscores allowed)", tc.name, got, tc.drops)
		}
		if got := strict.drops(tc.name); got != tc.strict {
			t.Errorf("drops(%q) = %v, want %v (underscores dropped)", tc.name, got, tc.strict)
		}
	}
}

// TestQuotedString: RFC 9110 Section 5.6.4 quoting, with and without
// characters to escape.
func TestQuotedString(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a.example:8443", `"a.example:8443"`},
		{"[2001:db8::1]", `"[2001:db8::1]"`},
		{"", `""`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{`"\`, `"\"\\"`},
	} {
		t.Run(tt.in, func(t *testing.T) {
			if got := quotedString(tt.in); got != tt.want {
				t.Errorf("quotedString(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}
