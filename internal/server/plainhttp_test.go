package server

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPlainHTTPOnTLSPort: every request line plain HTTP may start with
// (any method token, any case, after empty lines, split across writes)
// gets the 400 saying to use https; TLS records, SSLv2 hellos, binary
// garbage, SSH banners and tokens without a space are closed without a
// byte of HTTP. Each counts as one failure of its reason (issue #12,
// kind 9).
func TestPlainHTTPOnTLSPort(t *testing.T) {
	ts := startServer(t, baseConfig+shortTimeouts+inspectSite)
	addr := ts.addr("https")
	tests := []struct {
		name     string
		send     [][]byte // written in turn, the client then reads to the end
		answered bool
		reason   string
	}{
		{"GET", lines("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), true, reasonNotTLS},
		{"lower-case method", lines("get / HTTP/1.1\r\nHost: localhost\r\n\r\n"), true, reasonNotTLS},
		{"mixed-case method", lines("Get /index.html HTTP/1.0\r\n\r\n"), true, reasonNotTLS},
		{"method with - and digits", lines("M-SEARCH2 * HTTP/1.1\r\n\r\n"), true, reasonNotTLS},
		{"method with _ and other tchar", lines("X_P.U+T!~ / HTTP/1.1\r\n\r\n"), true, reasonNotTLS},
		{"one-letter method", lines("A / HTTP/1.1\r\n\r\n"), true, reasonNotTLS},
		{"method longer than a record header", lines("OPTIONS * HTTP/1.1\r\n\r\n"), true, reasonNotTLS},
		{"longest registered method", lines("UPDATEREDIRECTREF /x HTTP/1.1\r\n\r\n"), true, reasonNotTLS},
		{"after an empty line", lines("\r\nGET / HTTP/1.1\r\n\r\n"), true, reasonNotTLS},
		{"after bare-LF empty lines", lines("\n\n\nPOST / HTTP/1.1\n\n"), true, reasonNotTLS},
		{"split in the method", lines("PROPF", "IND / HTTP/1.1\r\n\r\n"), true, reasonNotTLS},
		{"split before the space", lines("\r\nDELETE", " /x HTTP/1.1\r\n\r\n"), true, reasonNotTLS},

		{"TLS change_cipher_spec record", [][]byte{{20, 3, 3, 0, 1, 1}}, false, reasonNotTLS},
		{"TLS application_data record", [][]byte{{23, 3, 3, 0, 5, 'h', 'e', 'l', 'l', 'o'}}, false, reasonNotTLS},
		{"TLS record of version 0x4745", lines("\x16GET / HTTP/1.1\r\n\r\n"), false, reasonNotTLS},
		{"SSLv2 hello", [][]byte{{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}}, false, reasonNotTLS},
		{"binary garbage", [][]byte{{0x00, 0xff, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x0d, 0x0a}}, false, reasonNotTLS},
		{"control byte after a token", lines("GET\x00/ HTTP/1.1\r\n\r\n"), false, reasonNotTLS},
		{"space first", lines(" GET / HTTP/1.1\r\n\r\n"), false, reasonNotTLS},
		{"token without a space", lines("PING\r\n"), false, reasonNotTLS},
		{"token longer than the sniff", lines(string(bytes.Repeat([]byte("A"), plainHTTPSniffMax)) + " / HTTP/1.1\r\n\r\n"), false, reasonNotTLS},
		{"SSH banner", lines("SSH-2.0-OpenSSH_9.6\r\n"), false, reasonNotTLS},
		{"SSH banner with a comment", lines("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"), false, reasonNotTLS},
		{"a method's start, then nothing", lines("PROPFIN"), false, reasonNotTLS},
		// Fewer bytes than a record header: crypto/tls waits for the
		// rest until timeouts.handshake.
		{"three bytes, then nothing", lines("GET"), false, reasonTimeout},
		// A record of any other type first carries no ClientHello
		// either: an alert (fatal, warning or close_notify, as OpenSSL
		// sends internal_error when it cannot build a ClientHello) is
		// not the client rejecting a certificate it never got.
		{"TLS alert record", [][]byte{{21, 3, 1, 0, 2, 2, 40}}, false, reasonNotTLS},
		// A handshake record that begins with another message than a
		// ClientHello: crypto/tls's decode_error (counted
		// malformed_hello) or unexpected_message (other) before.
		{"handshake record holding a ServerHello", [][]byte{{22, 3, 1, 0, 5, 2, 0, 0, 1, 0}}, false, reasonNotTLS},
		{"handshake record holding a Finished", [][]byte{append([]byte{22, 3, 3, 0, 16, 20, 0, 0, 12}, make([]byte, 12)...)}, false, reasonNotTLS},
		{"handshake record of an unknown message type", [][]byte{{22, 3, 1, 0, 5, 0xfe, 0, 0, 1, 0}}, false, reasonNotTLS},
		{"handshake record, its header apart from a ServerHello", [][]byte{{22, 3, 1, 0, 5}, {2, 0, 0, 1, 0}}, false, reasonNotTLS},
		{"handshake record of a HelloRequest", [][]byte{{22, 3, 1, 0, 4, 0, 0, 0, 0}}, false, reasonNotTLS},
		{"TLS bad_certificate alert first", [][]byte{{21, 3, 3, 0, 2, 2, 42}}, false, reasonNotTLS},
		{"TLS internal_error alert first", [][]byte{{21, 3, 3, 0, 2, 2, 80}}, false, reasonNotTLS},
		{"TLS close_notify first", [][]byte{{21, 3, 3, 0, 2, 1, 0}}, false, reasonNotTLS},
		{"TLS warning alerts first, many", [][]byte{bytes.Repeat([]byte{21, 3, 3, 0, 2, 1, 90}, 17)}, false, reasonNotTLS},

		// RFC 9112 section 3: whitespace other than SP may separate the
		// request line's parts.
		{"tab after the method", lines("GET\t/ HTTP/1.1\r\n\r\n"), true, reasonNotTLS},
		{"HTTP/2 prior-knowledge preface", lines("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), true, reasonNotTLS},
		{"HTTP/0.9 request", lines("GET /\r\n"), true, reasonNotTLS},
		// Longer than crypto/tls's and the sniff's reads: the rest is
		// read after the answer, so the close is clean (before, the
		// client read a reset after the 400, curl's exit 56).
		{"request line of 4 KiB", lines("GET /" + strings.Repeat("a", 4096) + " HTTP/1.1\r\nHost: localhost\r\n\r\n"), true, reasonNotTLS},
		{"60 header fields", lines("GET / HTTP/1.1\r\nHost: localhost\r\n" + strings.Repeat("X-Field: "+strings.Repeat("v", 100)+"\r\n", 60) + "\r\n"), true, reasonNotTLS},
		{"POST with a 100 KB body", lines("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("b", 100000)), true, reasonNotTLS},

		// A PROXY header on a listener without proxy_protocol_in: a
		// load balancer relaying a TLS client, which must not get HTTP.
		{"PROXY v1 header", lines("PROXY TCP4 192.0.2.1 192.0.2.2 40000 443\r\n\x16\x03\x01\x00\x05"), false, reasonProxyProtocol},
		{"PROXY v1 header, unknown", lines("PROXY UNKNOWN\r\n"), false, reasonProxyProtocol},
		{"PROXY v2 header", [][]byte{[]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc0\x00\x02\x02\x9c\x40\x01\xbb")}, false, reasonProxyProtocol},
		{"PROXY v2 header, split", [][]byte{[]byte("\r\n\r\n\x00"), []byte("\r\nQUIT\n\x20\x00\x00\x00")}, false, reasonProxyProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.metricSum("pqedge_handshake_failures_total", `reason="`+tt.reason+`"`)
			c := dialTimeout(t, addr)
			for i, b := range tt.send {
				if i > 0 {
					// Two segments, most likely two reads (not needed
					// for the outcome: one read gives the same).
					time.Sleep(20 * time.Millisecond)
				}
				if _, err := c.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			// The server closes on its own; the deadline only keeps a
			// broken server from hanging the test.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server did not close the connection within 10s (read %q)", got)
			}
			if tt.answered && err != nil {
				// A close with unread bytes is a reset.
				t.Errorf("the answer was followed by %v, not a clean close", err)
			}
			answered := bytes.HasPrefix(got, []byte("HTTP/1.0 400 Bad Request\r\n")) && bytes.Contains(got, []byte("https://"))
			if answered != tt.answered {
				t.Errorf("got %q; want answered with the 400: %v", got, tt.answered)
			}
			if !tt.answered && bytes.Contains(got, []byte("HTTP/")) {
				t.Errorf("got %q; want no HTTP written", got)
			}
			waitFor(t, "the failure's reason in /metrics", func() bool {
				return ts.metricSum("pqedge_handshake_failures_total", `reason="`+tt.reason+`"`) == before+1
			})
		})
	}
}

// lines is the byte slices of ss, to send in turn.
func lines(ss ...string) [][]byte {
	var bs [][]byte
	for _, s := range ss {
		bs = append(bs, []byte(s))
	}
	return bs
}

func TestSniffRequestLine(t *testing.T) {
	tests := []struct {
		in   string
		want sniffVerdict
	}{
		{"", sniffMore},
		{"\r\n\r\n", sniffMore},
		{"GET", sniffMore},
		{"SSH", sniffMore},
		{"SSH-", sniffNotHTTP},
		{"GET ", sniffHTTP},
		{"get /", sniffHTTP},
		{"\n\r\nM-SEARCH *", sniffHTTP},
		{"GET\t/", sniffHTTP},
		{"GET\v/", sniffHTTP},
		{"GET\f/", sniffHTTP},
		{"GET\r/", sniffNotHTTP}, // a CR ends a line
		{"\tGET /", sniffNotHTTP},
		{" GET", sniffNotHTTP},
		{"\r\n ", sniffNotHTTP},
		{"\x16\x03\x01", sniffNotHTTP},
		{"GET(/", sniffNotHTTP}, // "(" is a delimiter, not tchar
	}
	for _, tt := range tests {
		if got := sniffRequestLine([]byte(tt.in)); got != tt.want {
			t.Errorf("sniffRequestLine(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
