package proxy

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAuthorityShape: a Host whose bytes are all allowed is refused
// unless it is shaped as host [":" port], so that a name pqedge cannot
// match never reaches an upstream that may tidy it into another site's.
func TestAuthorityShape(t *testing.T) {
	tests := []struct {
		host string
		ok   bool
	}{
		{"", true}, // HTTP/1.0 without Host
		{"a.test", true},
		{"a.test.", true},
		{"A.Test:8443", true},
		{"a.test:", true}, // RFC 3986: the port may be empty
		{"_acme.a.test", true},
		{"192.0.2.1", true},
		{"192.0.2.1:443", true},
		{"[2001:db8::1]", true},
		{"[2001:db8::1]:443", true},
		{"xn--bcher-kva.test", true},
		{strings.Repeat("a", 63) + ".test", true},
		{"b.test..", false},
		{".b.test", false},
		{"b..test", false},
		{".", false},
		{"..", false},
		{":443", false},
		{"b.test:443:1", false},
		{"b.test:44x", false},
		{"b.test:65536", false},
		{"b.test:000443", false},
		{"::1", false},
		{"[::1", false},
		{"[::1]x", false},
		{"[::1]:4x", false},
		{"[192.0.2.1]", false},
		{"[fe80::1%25eth0]", false},
		{strings.Repeat("a", 64) + ".test", false},
		{strings.Repeat("a.", 127) + "ab", false}, // 256 bytes
	}
	for _, tt := range tests {
		if got := authorityShape(tt.host); got != tt.ok {
			t.Errorf("authorityShape(%q) = %v, want %v", tt.host, got, tt.ok)
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = tt.host
		if tt.host == "" {
			r.Proto, r.ProtoMinor = "HTTP/1.0", 0 // HTTP/1.1 requires one (TestAuthorityFault)
		}
		status, _ := CheckRequest(httptest.NewRecorder(), r)
		if want := map[bool]int{true: 0, false: http.StatusBadRequest}[tt.ok]; status != want {
			t.Errorf("CheckRequest with Host %q: %d, want %d", tt.host, status, want)
		}
	}
}

// TestAuthorityFault: requests whose authority is disguised or ambiguous
// beyond its shape get 400 (authorityFault); the same names spelt alike
// pass.
func TestAuthorityFault(t *testing.T) {
	tests := []struct {
		name   string
		target string // HTTP/1.x request target
		proto  int    // 0 for HTTP/1.0, 1 for HTTP/1.1, 2 for HTTP/2
		host   string // r.Host (HTTP/2: :authority)
		fields []string
		status int
	}{
		{name: "absolute-form", target: "https://a.test/x", proto: 1, host: "a.test", status: 0},
		{name: "absolute-form with userinfo", target: "https://u@a.test/x", proto: 1, host: "a.test", status: 400},
		{name: "absolute-form with user and password", target: "https://u:p@a.test/x", proto: 1, host: "a.test", status: 400},
		{name: "empty Host in HTTP/1.1", target: "/x", proto: 1, host: "", status: 400},
		{name: "no Host in HTTP/1.0", target: "/x", proto: 0, host: "", status: 0},
		{name: "HTTP/2 host as :authority", proto: 2, host: "a.test", fields: []string{"a.test"}, status: 0},
		{name: "HTTP/2 host with case, default port, trailing dot", proto: 2, host: "a.test", fields: []string{"A.Test.:443"}, status: 0},
		{name: "HTTP/2 host naming another", proto: 2, host: "a.test", fields: []string{"b.test"}, status: 400},
		{name: "HTTP/2 host with another port", proto: 2, host: "a.test", fields: []string{"a.test:8443"}, status: 400},
		{name: "HTTP/2 two host fields", proto: 2, host: "a.test", fields: []string{"a.test", "a.test"}, status: 400},
		{name: "HTTP/2 :authority and host empty", proto: 2, host: "", fields: []string{""}, status: 400},
		{name: "HTTP/2 no :authority, no host", proto: 2, host: "", status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.target
			if target == "" {
				target = "/x"
			}
			r := httptest.NewRequest(http.MethodGet, target, nil)
			r.Host = tt.host
			r.ProtoMajor, r.ProtoMinor = 1, tt.proto
			if tt.proto == 2 {
				r.ProtoMajor, r.ProtoMinor = 2, 0
				r.TLS = &tls.ConnectionState{}
			}
			for _, h := range tt.fields {
				r.Header.Add("Host", h)
			}
			status, reason := CheckRequest(httptest.NewRecorder(), r)
			if status != tt.status {
				t.Errorf("CheckRequest: %d (%s), want %d", status, reason, tt.status)
			}
		})
	}
}

func FuzzAuthorityShape(f *testing.F) {
	for _, s := range []string{"a.test", "a.test.:1", "[::1]:443", "b.test..", "b:1:2", "[", ".", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !authorityShape(host) || host == "" {
			return
		}
		// What passes has no empty label and at most one port.
		name := host
		if !strings.HasPrefix(host, "[") {
			if i := strings.IndexByte(host, ':'); i >= 0 {
				name = host[:i]
				if strings.Contains(host[i+1:], ":") {
					t.Fatalf("%q passed with two ports", host)
				}
			}
			if strings.Contains(strings.TrimSuffix(name, "."), "..") || strings.HasPrefix(name, ".") {
				t.Fatalf("%q passed with an empty label", host)
			}
		}
	})
}
