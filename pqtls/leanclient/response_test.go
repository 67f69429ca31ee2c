package leanclient

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func getRequest(path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: leanclient-test\r\nConnection: close\r\n\r\n")
}

// startHTTPServer runs crypto/tls + net/http on loopback. It counts the
// requests whose context was cancelled before the handler returned.
func startHTTPServer(t *testing.T, h http.Handler) (addr string, cancelled *atomic.Int64) {
	t.Helper()
	chain := newTestChain(t, "ecdsa")
	cancelled = &atomic.Int64{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.Context().Err() != nil {
			cancelled.Add(1)
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{chain.cert}, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), cancelled
}

func TestRequestNetHTTP(t *testing.T) {
	body := bytes.Repeat([]byte("pqedge "), 5000) // 35,000 B: three records at least
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		// Time for the client's close_notify, had it been sent early, to
		// reach the server and cancel the request.
		time.Sleep(20 * time.Millisecond)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	addr, cancelled := startHTTPServer(t, mux)

	tests := []struct {
		name        string
		path        string
		readTicket  bool
		closeNotify bool
		wantStatus  int
		minBytes    int // the body at least, headers come on top
	}{
		{name: "200 large body", path: "/big", closeNotify: true, wantStatus: 200, minBytes: len(body)},
		{name: "200 small body", path: "/small", closeNotify: true, wantStatus: 200, minBytes: 3},
		{name: "404", path: "/missing", closeNotify: true, wantStatus: 404, minBytes: len("404 page not found\n")},
		{name: "without close_notify", path: "/small", wantStatus: 200, minBytes: 3},
		{name: "after a ticket", path: "/big", readTicket: true, closeNotify: true, wantStatus: 200, minBytes: len(body)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Dial(testContext(t), addr, &Config{
				ServerName: "localhost", Request: getRequest(tt.path),
				ReadTicket: tt.readTicket, CloseNotify: tt.closeNotify,
			})
			if err != nil {
				t.Fatalf("request failed: %v", err)
			}
			if res.Status != tt.wantStatus {
				t.Errorf("status %d, want %d", res.Status, tt.wantStatus)
			}
			if res.ResponseBytes < tt.minBytes+len("HTTP/1.1 200 OK\r\n\r\n") {
				t.Errorf("response of %d bytes, want more than %d", res.ResponseBytes, tt.minBytes)
			}
			if tt.readTicket && res.Session == nil {
				t.Error("no ticket read before the response")
			}
			if res.BytesReceived < res.ServerFlightBytes+res.ResponseBytes {
				t.Errorf("bytes received %d < flight %d + response %d", res.BytesReceived, res.ServerFlightBytes, res.ResponseBytes)
			}
		})
	}
	if n := cancelled.Load(); n != 0 {
		t.Errorf("%d requests were cancelled by the server: the client's close_notify came before the response", n)
	}
}

// TestRequestExactBytes: a raw crypto/tls server answers with known
// bytes, after two NewSessionTickets, and the client counts exactly them.
func TestRequestExactBytes(t *testing.T) {
	chain := newTestChain(t, "ecdsa")
	answer := []byte("HTTP/1.1 204 No Content\r\nServer: raw\r\n\r\n")
	gotRequest := make(chan string, 1)
	addr := startRawServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}}, func(tc *tls.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(tc))
		if err != nil {
			gotRequest <- err.Error()
			return
		}
		gotRequest <- req.Method + " " + req.URL.Path + " " + req.Host + " " + req.Header.Get("Connection")
		tc.Write(answer[:10]) // two records
		tc.Write(answer[10:])
	})
	res, err := Dial(testContext(t), addr, &Config{ServerName: "localhost", Request: getRequest("/x"), ReadTicket: true, CloseNotify: true})
	if err != nil {
		t.Fatalf("request failed: %v", err)
	}
	if got := <-gotRequest; got != "GET /x localhost close" {
		t.Errorf("server read %q", got)
	}
	if res.Status != 204 || res.ResponseBytes != len(answer) {
		t.Errorf("status %d, %d bytes; want 204, %d bytes", res.Status, res.ResponseBytes, len(answer))
	}
}

// startRawServer runs a crypto/tls server that hands each connection,
// after its handshake, to serve, then closes it with close_notify.
func startRawServer(t *testing.T, cfg *tls.Config, serve func(*tls.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				defer tc.Close()
				// Bounds a test whose client stalls.
				tc.SetDeadline(time.Now().Add(20 * time.Second))
				if tc.Handshake() == nil {
					serve(tc)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRequestBadResponses(t *testing.T) {
	chain := newTestChain(t, "ecdsa")
	tests := []struct {
		name   string
		answer string
		want   string // in the error
	}{
		{name: "nothing", answer: "", want: "no response"},
		{name: "not HTTP", answer: "SSH-2.0-OpenSSH_9.2\r\n", want: "bad status line"},
		{name: "cut status line", answer: "HTTP/1.1 200", want: "incomplete status line"},
		{name: "status out of range", answer: "HTTP/1.1 600 Odd\r\n\r\n", want: "outside 100-599"},
		{name: "endless first line", answer: strings.Repeat("H", 3000), want: "no status line end in the first 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startRawServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}}, func(tc *tls.Conn) {
				http.ReadRequest(bufio.NewReader(tc))
				io.WriteString(tc, tt.answer)
			})
			res, err := Dial(testContext(t), addr, &Config{ServerName: "localhost", Request: getRequest("/"), CloseNotify: true})
			if KindOf(err) != KindMalformed || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a malformed error containing %q", err, tt.want)
			}
			if res.ResponseBytes != len(tt.answer) || res.Status != 0 {
				t.Errorf("status %d, %d bytes; want 0, %d bytes", res.Status, res.ResponseBytes, len(tt.answer))
			}
		})
	}
}

// TestRequestServerKeepsOpen: a server that answers but does not close
// costs the client its Timeout, reported as a timeout.
func TestRequestServerKeepsOpen(t *testing.T) {
	chain := newTestChain(t, "ecdsa")
	addr := startRawServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}}, func(tc *tls.Conn) {
		io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		io.Copy(io.Discard, tc)
	})
	_, err := Dial(testContext(t), addr, &Config{ServerName: "localhost", Request: getRequest("/"), Timeout: 300 * time.Millisecond})
	if KindOf(err) != KindTimeout {
		t.Fatalf("got %v, want a timeout", err)
	}
}

func TestParseStatusLine(t *testing.T) {
	tests := []struct {
		head string
		code int
		err  bool
	}{
		{head: "HTTP/1.1 200 OK\r\n", code: 200},
		{head: "HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\n", code: 404},
		{head: "HTTP/1.1 502\r\n", code: 502},             // no reason phrase, no SP
		{head: "HTTP/1.1 301 \r\n", code: 301},            // empty reason
		{head: "HTTP/1.1 200 OK\nDate: x\n\n", code: 200}, // lone LF
		{head: "HTTP/1.1 099 Low\r\n", err: true},
		{head: "HTTP/1.1 2000 OK\r\n", err: true},
		{head: "HTTP/1.1 20x OK\r\n", err: true},
		{head: "HTTP/2 200\r\n", err: true},
		{head: "HTTP/1.1  200 OK\r\n", err: true},
		{head: "http/1.1 200 OK\r\n", err: true},
		{head: "HTTP/1.1 200 OK", err: true},
		{head: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.head, func(t *testing.T) {
			code, err := parseStatusLine([]byte(tt.head))
			if (err != nil) != tt.err || code != tt.code {
				t.Errorf("got %d, %v; want %d, error %v", code, err, tt.code, tt.err)
			}
		})
	}
}

// FuzzStatusLine feeds the status-line parser with mutations of real
// response heads (testdata/responses, captured from net/http and nginx).
func FuzzStatusLine(f *testing.F) {
	for _, name := range responseSeeds(f) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		code, err := parseStatusLine(head)
		if err == nil && (code < 100 || code > 599) {
			t.Fatalf("accepted status code %d", code)
		}
		if err != nil && code != 0 {
			t.Fatalf("code %d with error %v", code, err)
		}
	})
}

// FuzzResponse reads mutated responses, two records of one inner content
// type protected under known server application keys: every failure must
// be a typed *Error, never a panic, and no more bytes counted than sent.
func FuzzResponse(f *testing.F) {
	for _, name := range responseSeeds(f) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, uint8(recordApplicationData), uint16(len(data)/2))
	}
	ticket, err := os.ReadFile("testdata/tickets/go.msg")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ticket, uint8(recordHandshake), uint16(len(ticket)/2))
	f.Add([]byte{typeKeyUpdate, 0, 0, 1, 0}, uint8(recordHandshake), uint16(0))
	f.Add([]byte{2, 40}, uint8(recordAlert), uint16(0))
	suite := lookupCipherSuite(tls.TLS_AES_128_GCM_SHA256)
	secret := bytes.Repeat([]byte{7}, 32)
	f.Fuzz(func(t *testing.T, payload []byte, typ uint8, split uint16) {
		if len(payload) > 4*maxPlaintext {
			return
		}
		enc, err := suite.trafficProtection(secret)
		if err != nil {
			t.Fatal(err)
		}
		w := &recordConn{out: enc}
		cut := min(int(split), len(payload))
		var wire []byte
		for _, part := range [][]byte{payload[:cut], payload[cut:]} {
			wire = append(wire, w.records(typ, part, 0)...)
		}
		rc := newRecordConn(&memConn{reply: wire})
		defer rc.release()
		hs := &handshakeState{cfg: &Config{Request: getRequest("/")}, rc: rc, res: &Result{}, suite: suite, serverAppSecret: secret}
		err = hs.readResponse()
		if err != nil && KindOf(err) == 0 {
			t.Fatalf("untyped error: %v", err)
		}
		if hs.res.ResponseBytes > len(payload) {
			t.Fatalf("counted %d response bytes of %d sent", hs.res.ResponseBytes, len(payload))
		}
		if err == nil && (hs.res.Status < 100 || hs.res.Status > 599) {
			t.Fatalf("accepted status %d", hs.res.Status)
		}
	})
}

func responseSeeds(f *testing.F) []string {
	files, _ := filepath.Glob("testdata/responses/*.http")
	if len(files) == 0 {
		f.Fatal("no saved responses in testdata/responses")
	}
	return files
}
