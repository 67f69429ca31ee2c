package pqtls

import (
	"crypto/tls"
	"net"
	"testing"
)

// BenchmarkCaptureAndParse measures what CaptureConn adds to one connection
// carrying a Chromium ClientHello (1.9 KB, X25519MLKEM768 share): the
// capture copy in Read, the framing and the parse.
func BenchmarkCaptureAndParse(b *testing.B) {
	recs := readCapture(b, "chromium")
	buf := make([]byte, 64<<10)
	src := &chunkConn{chunk: len(recs)}
	b.SetBytes(int64(len(recs)))
	b.ReportAllocs()
	for b.Loop() {
		src.data = recs
		cc := NewCaptureConn(src, 0)
		if _, err := cc.Read(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := cc.ClientHello(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseClientHello is the parse alone.
func BenchmarkParseClientHello(b *testing.B) {
	msg := parseCaptures(b)["chromium"].Raw
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseClientHello(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJA4 is the fingerprint of a parsed Chromium hello.
func BenchmarkJA4(b *testing.B) {
	ch := parseCaptures(b)["chromium"]
	b.ReportAllocs()
	for b.Loop() {
		_ = ch.JA4()
	}
}

// BenchmarkHandshake runs full TLS 1.3 handshakes (Go client and server in
// this process, X25519MLKEM768, ECDSA P-256, no resumption) over net.Pipe,
// without and with CaptureConn plus ClientHello() in GetConfigForClient.
// The time per op covers both ends; compare the difference and
// BenchmarkCaptureAndParse with it.
func BenchmarkHandshake(b *testing.B) {
	cert := captureTestCertificate(b)
	clientCfg := &tls.Config{ServerName: "pqedge.test", InsecureSkipVerify: true}
	for _, capture := range []bool{false, true} {
		name := "plain"
		if capture {
			name = "capture"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				clientEnd, serverEnd := net.Pipe()
				var conn net.Conn = serverEnd
				cfg := &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true}
				if capture {
					cc := NewCaptureConn(serverEnd, 0)
					conn = cc
					cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
						_, err := hello.Conn.(*CaptureConn).ClientHello()
						return nil, err
					}
				}
				errc := make(chan error, 1)
				go func() { errc <- tls.Server(conn, cfg).Handshake() }()
				if err := tls.Client(clientEnd, clientCfg).Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				clientEnd.Close()
				serverEnd.Close()
			}
		})
	}
}
