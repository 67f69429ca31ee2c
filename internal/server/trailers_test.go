package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// trailerUpstream records, by path, the trailers of each request it read
// to the end and how its body was framed, and answers with one announced
// trailer (X-Resp-Sum) and one it did not announce (X-Resp-Late).
type trailerUpstream struct {
	addr string
	mu   sync.Mutex
	got  map[string]trailerSeen
}

type trailerSeen struct {
	trailer  http.Header
	announce []string // the Trailer header it got
	body     int
	chunked  bool
}

func newTrailerUpstream(t *testing.T) *trailerUpstream {
	u := &trailerUpstream{got: map[string]trailerSeen{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		announce := r.Header.Values("Trailer")
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.mu.Lock()
		u.got[r.URL.Path] = trailerSeen{trailer: r.Trailer.Clone(), announce: announce, body: int(n), chunked: slices.Contains(r.TransferEncoding, "chunked")}
		u.mu.Unlock()
		w.Header().Set("Trailer", "X-Resp-Sum")
		io.WriteString(w, "ok")
		w.Header().Set("X-Resp-Sum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Resp-Late", "def")
	}))
	t.Cleanup(srv.Close)
	u.addr = strings.TrimPrefix(srv.URL, "http://")
	return u
}

func (u *trailerUpstream) seen(path string) (trailerSeen, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.got[path]
	return s, ok
}

// onlyReader hides a reader's type, so that a client cannot learn its
// length: the body goes without one (chunked over HTTP/1.1).
type onlyReader struct{ io.Reader }

// TestRequestTrailers: a client's request trailers reach the upstream over
// HTTP/1.1 (chunked), HTTP/2 and HTTP/3, for bodies of unknown length and
// of a declared one (read whole before an upstream is picked, up to 16
// KiB, or streamed), with the trailers pqedge must not pass dropped (its
// own and X-Forwarded-* in any spelling, and those RFC 9110 Section 6.5.1
// rules out as trailers: Cookie over HTTP/2 and HTTP/3, where the
// servers refuse the rest); the response's trailers, announced or not,
// reach the client. Before, the upstream got the announced names
// ("Trailer: X-Checksum") and no trailer at all, on every protocol.
func TestRequestTrailers(t *testing.T) {
	up := newTrailerUpstream(t)
	ts := startServer(t, h3FloodConfig(up.addr))
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}}
	h3, _ := ts.h3Client()
	clients := []struct {
		proto  string
		c      *http.Client
		base   string
		wantPr int
	}{
		{"HTTP/1.1", h1, "https://" + ts.addr("https"), 1},
		{"HTTP/2", ts.client(), "https://" + ts.addr("https"), 2},
		{"HTTP/3", h3, ts.h3URL("https"), 3},
	}
	bodies := []struct {
		name  string
		size  int
		known bool
	}{
		{"unknown length", 40000, false},
		{"declared length, read whole", 1000, true},
		{"declared length, streamed", 40000, true},
	}
	for _, cl := range clients {
		for _, b := range bodies {
			if cl.proto == "HTTP/1.1" && b.known {
				continue // HTTP/1.1 carries trailers only after chunks
			}
			t.Run(cl.proto+"/"+b.name, func(t *testing.T) {
				path := "/t/" + strings.NewReplacer("/", "", " ", "-", ",", "").Replace(cl.proto+b.name)
				payload := bytes.Repeat([]byte("x"), b.size)
				var body io.Reader = onlyReader{bytes.NewReader(payload)}
				if b.known {
					body = bytes.NewReader(payload)
				}
				req, err := http.NewRequest(http.MethodPost, cl.base+path, body)
				if err != nil {
					t.Fatal(err)
				}
				req.Trailer = http.Header{
					"X-Checksum":      {"sum-1"},
					"Pqedge-Tls-Pq":   {"true"},
					"X-Forwarded-For": {"6.6.6.6"},
					"Cookie":          {"session=forged"},
				}
				resp, err := cl.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.ProtoMajor != cl.wantPr {
					t.Fatalf("%s %s %q", resp.Proto, resp.Status, got)
				}
				seen, ok := up.seen(path)
				if !ok {
					t.Fatal("the upstream did not read the request to its end")
				}
				if want := (http.Header{"X-Checksum": {"sum-1"}}); !maps.EqualFunc(seen.trailer, want, slices.Equal) || seen.body != b.size {
					t.Errorf("the upstream got trailers %v (announced %q) after %d bytes (chunked %v), want %v after %d", seen.trailer, seen.announce, seen.body, seen.chunked, want, b.size)
				}
				if resp.Trailer.Get("X-Resp-Sum") != "abc" || resp.Trailer.Get("X-Resp-Late") != "def" {
					t.Errorf("the client got response trailers %v, want X-Resp-Sum: abc and X-Resp-Late: def", resp.Trailer)
				}
			})
		}
	}
}

// TestRequestTrailersRawHTTP1: trailers of a chunked HTTP/1.1 body,
// announced or not, reach the upstream, but those that must not be
// trailers (RFC 9110 Section 6.5.1: framing, routing, authentication,
// conditionals, content metadata), pqedge's own and the client-address
// headers in any spelling, and names with "_" (dropped from headers by
// default): neither announced nor sent.
func TestRequestTrailersRawHTTP1(t *testing.T) {
	up := newTrailerUpstream(t)
	ts := startServer(t, h3FloodConfig(up.addr))
	tests := []struct {
		name, announce, trailer string
		want                    http.Header
	}{
		{"announced", "Trailer: X-Checksum\r\n", "X-Checksum: a\r\n", http.Header{"X-Checksum": {"a"}}},
		{"not announced", "", "X-Late: b\r\nX-Late: c\r\n", http.Header{"X-Late": {"b", "c"}}},
		// Announced names come with the request's head: the upstream's
		// Trailer map holds those it was announced.
		{"refused names dropped, the rest kept", "Trailer: X-Keep, Authorization, PQEdge-TLS-PQ, Cookie\r\n",
			"X-Keep: 1\r\nContent-Length: 9\r\nTransfer-Encoding: gzip\r\nHost: evil.test\r\nAuthorization: Basic Zm9v\r\n" +
				"Cookie: a=b\r\nContent-Type: text/evil\r\nPQEdge_TLS_PQ: true\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n" +
				"X_Forwarded_For: 6.6.6.6\r\nX_Custom: 1\r\nIf-Match: *\r\nUpgrade: h2c\r\n",
			http.Header{"X-Keep": {"1"}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("/raw/%d", i)
			c, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n%s\r\n5\r\nhello\r\n0\r\n%s\r\n", path, tt.announce, tt.trailer)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s", resp.Status)
			}
			seen, _ := up.seen(path)
			if !maps.EqualFunc(seen.trailer, tt.want, slices.Equal) || seen.body != 5 {
				t.Errorf("the upstream got trailers %v after %d bytes, want %v", seen.trailer, seen.body, tt.want)
			}
		})
	}
}
