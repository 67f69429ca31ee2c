package acme

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRedirectToHTTPS(t *testing.T) {
	tests := []struct {
		name      string
		host      string
		target    string // request target as sent on the wire
		port      int
		wantCode  int
		wantLocat string
	}{
		{name: "name", host: "example.com", target: "/a/b?c=d", wantCode: 308, wantLocat: "https://example.com/a/b?c=d"},
		{name: "port 80 dropped", host: "example.com:80", target: "/", wantCode: 308, wantLocat: "https://example.com/"},
		{name: "port 443 omitted", host: "example.com:8080", target: "/x", port: 443, wantCode: 308, wantLocat: "https://example.com/x"},
		{name: "other https port", host: "example.com", target: "/x", port: 8443, wantCode: 308, wantLocat: "https://example.com:8443/x"},
		{name: "IPv4", host: "192.0.2.1:80", target: "/", wantCode: 308, wantLocat: "https://192.0.2.1/"},
		{name: "IPv6", host: "[2001:db8::1]:80", target: "/", port: 8443, wantCode: 308, wantLocat: "https://[2001:db8::1]:8443/"},
		{name: "double slash path", host: "example.com", target: "//evil.example/x", wantCode: 308, wantLocat: "https://example.com/evil.example/x"},
		{name: "userinfo in host", host: "user@evil.example", target: "/", wantCode: 400},
		{name: "slash in host", host: "evil.example/x", target: "/", wantCode: 400},
		{name: "empty host", host: "", target: "/", wantCode: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://placeholder"+tt.target, strings.NewReader("body"))
			r.Host = tt.host
			r.RequestURI = tt.target
			w := httptest.NewRecorder()
			RedirectToHTTPS(tt.port).ServeHTTP(w, r)
			if w.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d", w.Code, tt.wantCode)
			}
			if got := w.Header().Get("Location"); got != tt.wantLocat {
				t.Errorf("Location = %q, want %q", got, tt.wantLocat)
			}
		})
	}
}

// FuzzHTTPSURL checks that whatever Host header and path a client sends, a
// redirect goes to https, to the host it names, and never to another host
// through a scheme-relative path or userinfo.
func FuzzHTTPSURL(f *testing.F) {
	for _, seed := range []struct{ host, uri string }{
		{"example.com", "/"},
		{"example.com:80", "/a?b=c"},
		{"[::1]:80", "//x"},
		{"user@host", "/"},
		{"host", "\\\\evil"},
		{"xn--bcher-kva.example", "/%2F%2Fevil"},
	} {
		f.Add(seed.host, seed.uri)
	}
	f.Fuzz(func(t *testing.T, host, uri string) {
		// The handler passes r.URL.RequestURI(), which net/http has
		// already parsed; targets it would reject never get here.
		if _, err := url.ParseRequestURI(uri); err != nil {
			return
		}
		target, err := httpsURL(host, 8443, uri)
		if err != nil {
			return
		}
		u, err := url.Parse(target)
		if err != nil {
			t.Fatalf("httpsURL(%q, %q) = %q, which does not parse: %v", host, uri, target, err)
		}
		if u.Scheme != "https" || u.User != nil || u.Port() != "8443" {
			t.Fatalf("httpsURL(%q, %q) = %q: want https, no userinfo, port 8443", host, uri, target)
		}
		if !validHost(u.Hostname()) {
			t.Fatalf("httpsURL(%q, %q) = %q: host %q is not a plain host", host, uri, target, u.Hostname())
		}
		if strings.HasPrefix(target[len("https://"+u.Host):], "//") {
			t.Fatalf("httpsURL(%q, %q) = %q: path starts with //", host, uri, target)
		}
	})
}

func TestIsTLSALPNChallenge(t *testing.T) {
	tests := []struct {
		name   string
		hello  tls.ClientHelloInfo
		expect bool
	}{
		{name: "challenge", hello: tls.ClientHelloInfo{ServerName: "a.example", SupportedProtos: []string{ALPNProtocol}}, expect: true},
		{name: "no SNI", hello: tls.ClientHelloInfo{SupportedProtos: []string{ALPNProtocol}}},
		{name: "browser", hello: tls.ClientHelloInfo{ServerName: "a.example", SupportedProtos: []string{"h2", "http/1.1"}}},
		// RFC 8737 section 3: the CA offers acme-tls/1 alone; a client
		// listing it among others is an ordinary client.
		{name: "mixed list", hello: tls.ClientHelloInfo{ServerName: "a.example", SupportedProtos: []string{"h2", ALPNProtocol}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTLSALPNChallenge(&tt.hello); got != tt.expect {
				t.Errorf("IsTLSALPNChallenge = %v, want %v", got, tt.expect)
			}
		})
	}
}

// Requests that are not challenges reach next, and so does a challenge
// token no Manager is working on: certmagic answers only tokens it issued,
// never by echoing the path back. (The Pebble tests cover real tokens.)
func TestHTTPChallengeHandlerPassesThrough(t *testing.T) {
	site := newTestSite(t)
	m, _ := newTestManager(t, &testCA{dirURL: "https://127.0.0.1:1/dir"}, site, nil)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	tests := []struct {
		name     string
		path     string
		wantNext bool
	}{
		{name: "site page", path: "/index.html", wantNext: true},
		{name: "unknown token", path: "/.well-known/acme-challenge/unknownToken123", wantNext: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://x.pqedge.test"+tt.path, nil)
			w := httptest.NewRecorder()
			m.HTTPChallengeHandler(next).ServeHTTP(w, r)
			if got := w.Code == http.StatusTeapot; got != tt.wantNext {
				t.Errorf("passed to next = %v (code %d), want %v", got, w.Code, tt.wantNext)
			}
		})
	}
	t.Run("nil next", func(t *testing.T) {
		w := httptest.NewRecorder()
		m.HTTPChallengeHandler(nil).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://x.pqedge.test/", nil))
		if w.Code != http.StatusNotFound {
			t.Errorf("code = %d, want 404", w.Code)
		}
	})
}

// TestRedirectToHTTPSBadTarget: an absolute-form request target whose
// opaque part net/http passes unchecked ("a:0%") would make a Location no
// client can parse; it gets 400 instead, over a real connection (the
// fuzzer found it).
func TestRedirectToHTTPSBadTarget(t *testing.T) {
	srv := httptest.NewServer(RedirectToHTTPS(8443))
	t.Cleanup(srv.Close)
	for _, target := range []string{"a:0%", "x:%zz"} {
		t.Run(target, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n", target)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "bad request target") || resp.Header.Get("Location") != "" {
				t.Errorf("got %d %q, Location %q; want 400 saying bad request target", resp.StatusCode, body, resp.Header.Get("Location"))
			}
		})
	}
}
