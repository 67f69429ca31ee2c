package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestResponseCutShort: a response whose body cannot be copied whole once
// its head went out, because the upstream broke it or the client stopped
// reading past timeouts.response_write, ends as a broken response on
// every protocol (HTTP/1.1: the connection closed before the chunked
// body's end; HTTP/2 and HTTP/3: the stream reset), and is counted in
// pqedge_http_requests_total, with the client's part in
// pqedge_client_errors_total. Before, over HTTP/3 the stream ended with
// FIN, so a client read a chunked body its upstream cut as a whole one;
// over HTTP/1.1 and HTTP/2 the request was neither counted nor logged
// (ReverseProxy's panic skipped the accounting), so slow readers pinning
// upstream connections for response_write each left no trace.
func TestResponseCutShort(t *testing.T) {
	const chunk = 64 << 10
	up := rawUpstream(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/cut":
			// A chunked body that breaks: one chunk, then the close
			// without the last chunk (RFC 9112 section 7.1).
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", chunk, strings.Repeat("x", chunk))
			time.Sleep(50 * time.Millisecond)
		case "/big":
			// More than any socket and flow-control window between
			// pqedge and a client that does not read.
			const size = 64 << 20
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
			block := []byte(strings.Repeat("y", 32<<10))
			for range size / len(block) {
				if _, err := c.Write(block); err != nil {
					return
				}
			}
		}
	})
	// Each broken body counts toward ejection (the upstream's fault):
	// room for all of them.
	cfg := strings.Replace(strings.Replace(hardenedConfig(up), baseConfig, h3Config, 1), "eject_after = 2", "eject_after = 100", 1) + `
[timeouts]
response_write = "1s"
`
	ts, _ := startH3(t, cfg)
	h3, _ := ts.h3Client()
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}}
	clients := []struct {
		proto  string
		client *http.Client
		url    string
	}{
		{"HTTP/1.1", h1, "https://" + ts.addr("https")},
		{"HTTP/2", ts.client(), "https://" + ts.addr("https")},
		{"HTTP/3", h3, ts.h3URL("https")},
	}
	for _, c := range clients {
		t.Run(c.proto+" upstream breaks the body", func(t *testing.T) {
			served := ts.metricSum("pqedge_http_requests_total", `code="200"`, `site="local"`)
			clientErrs := ts.metricSum("pqedge_client_errors_total", `site="local"`)
			resp, err := c.client.Get(c.url + "/cut")
			if err != nil {
				t.Fatalf("GET /cut: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("the client read a whole body of %d bytes; the upstream cut it after %d: want a read error (a reset stream or a closed connection)", len(body), chunk)
			}
			waitFor(t, "the cut response to be counted", func() bool {
				return ts.metricSum("pqedge_http_requests_total", `code="200"`, `site="local"`) == served+1
			})
			if got := ts.metricSum("pqedge_client_errors_total", `site="local"`); got != clientErrs {
				t.Errorf("pqedge_client_errors_total went from %v to %v: the upstream broke the body, not the client", clientErrs, got)
			}
		})
	}
	for _, c := range clients[:2] {
		t.Run(c.proto+" client stops reading", func(t *testing.T) {
			served := ts.metricSum("pqedge_http_requests_total", `code="200"`, `site="local"`)
			clientErrs := ts.metricSum("pqedge_client_errors_total", `site="local"`)
			resp, err := c.client.Get(c.url + "/big")
			if err != nil {
				t.Fatalf("GET /big: %v", err)
			}
			defer resp.Body.Close()
			// The body is not read: pqedge's writes stall, and the one
			// under way fails after response_write.
			waitFor(t, "the stalled response to be counted as the client's error", func() bool {
				return ts.metricSum("pqedge_client_errors_total", `site="local"`) == clientErrs+1
			})
			if got := ts.metricSum("pqedge_http_requests_total", `code="200"`, `site="local"`); got != served+1 {
				t.Errorf("pqedge_http_requests_total{code=\"200\"} went from %v to %v, want one more", served, got)
			}
		})
	}
}

// TestZeroWindowAnswersEnd: an answer pqedge writes itself (here the 400
// for a path that climbs above the root) to an HTTP/2 client that holds
// its flow-control window at zero (SETTINGS_INITIAL_WINDOW_SIZE 0, no
// WINDOW_UPDATE) ends within timeouts.response_write: its stream is
// reset. Before, the body's write waited for a window that never came,
// holding the stream, its handler goroutine and buffers until the client
// closed the connection; 100 such connections held ~9,000 goroutines
// and ~145 MiB while their client kept them.
func TestZeroWindowAnswersEnd(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) { c.Close() })
	ts := startServer(t, hardenedConfig(up)+`
[timeouts]
response_write = "1s"
`)
	const streams = 5
	c, fr := dialH2(t, ts, 10*time.Second)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	block := h2Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/../x")
	for i := range streams {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(6 * time.Second))
	ended := map[uint32]bool{}
	for len(ended) < streams {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %v, %d of %d streams ended (%v): the rest still wait for a window: %v", time.Since(start).Round(time.Millisecond), len(ended), streams, ended, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame:
			ended[f.StreamID] = true
		case *http2.DataFrame:
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v: the connection was closed, want its streams reset", f.ErrCode)
		}
	}
}
