package pqtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCaptureConnGetConfigForClient runs a real tls.Server on loopback and
// reads the capture from GetConfigForClient through ClientHelloInfo.Conn,
// the way pqedge does.
func TestCaptureConnGetConfigForClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type seen struct {
		info *tls.ClientHelloInfo
		ch   *ClientHello
		err  error
	}
	seenc := make(chan seen, 1)
	serverCfg := &tls.Config{
		Certificates: []tls.Certificate{captureTestCertificate(t)},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			ch, err := hello.Conn.(*CaptureConn).ClientHello()
			seenc <- seen{hello, ch, err}
			return nil, nil
		},
	}
	serverDone := make(chan *CaptureConn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(serverDone)
			return
		}
		cc := NewCaptureConn(c, 0)
		srv := tls.Server(cc, serverCfg)
		srv.SetDeadline(time.Now().Add(30 * time.Second)) // a broken test must not hang
		if err := srv.Handshake(); err != nil {
			t.Errorf("server handshake: %v", err)
		}
		// Echo one message to show the conn still works after capture.
		buf := make([]byte, 5)
		if _, err := io.ReadFull(srv, buf); err == nil {
			srv.Write(buf)
		}
		srv.Close()
		serverDone <- cc
	}()

	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "pqedge.test", InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 5)
	if _, err := io.ReadFull(conn, echo); err != nil || string(echo) != "hello" {
		t.Fatalf("echo %q, %v", echo, err)
	}
	state := conn.ConnectionState()
	conn.Close()

	s := <-seenc
	if s.err != nil {
		t.Fatalf("ClientHello() in GetConfigForClient: %v", s.err)
	}
	ch := s.ch
	if ch.ServerName != s.info.ServerName || !slices.Equal(ch.Groups, s.info.SupportedCurves) ||
		!slices.Equal(ch.SignatureAlgorithms, s.info.SignatureSchemes) || !slices.Equal(ch.ALPN, s.info.SupportedProtos) ||
		!slices.Equal(ch.CipherSuites, s.info.CipherSuites) || !slices.Equal(ch.SupportedVersions, s.info.SupportedVersions) {
		t.Errorf("capture disagrees with crypto/tls:\ncapture %+v\ntls     %+v", ch, s.info)
	}
	if ks := keyShareSize(ch, state.CurveID); ks == 0 {
		t.Errorf("negotiated %v, but the capture has no key share for it: %v", state.CurveID, ch.KeyShares)
	}
	if ch.Wire.Size != len(ch.Raw) || ch.Wire.Records != 1 || ch.Wire.Reads < 1 {
		t.Errorf("wire %+v", ch.Wire)
	}

	// After the handshake the result is cached and safe to share.
	cc := <-serverDone
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			again, err := cc.ClientHello()
			if err != nil || again != ch {
				t.Errorf("second ClientHello() = %p, %v; want the cached %p", again, err, ch)
			}
		})
	}
	wg.Wait()
}

// TestCaptureConnSplit sends the ClientHello of a real crypto/tls client as
// three records in four writes over net.Pipe, whose every Write is a
// separate Read on the other end, and checks the handshake completes and
// the capture saw it all.
func TestCaptureConnSplit(t *testing.T) {
	clientEnd, serverEnd := net.Pipe()
	cc := NewCaptureConn(serverEnd, 0)
	var ch *ClientHello
	var chErr error
	srv := tls.Server(cc, &tls.Config{
		Certificates: []tls.Certificate{captureTestCertificate(t)},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			ch, chErr = cc.ClientHello()
			return nil, nil
		},
	})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()

	split := &pipeSplitConn{Conn: clientEnd, recordSizes: []int{300, 300}, writeSizes: []int{3, 400, 200}}
	client := tls.Client(split, &tls.Config{ServerName: "pqedge.test", InsecureSkipVerify: true})
	client.SetDeadline(time.Now().Add(30 * time.Second))
	srv.SetDeadline(time.Now().Add(30 * time.Second))
	if err := client.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if chErr != nil {
		t.Fatal(chErr)
	}
	// Four writes need at least four reads; crypto/tls's read buffer may
	// cut a write in two.
	if ch.Wire.Records != 3 || ch.Wire.Reads < 4 {
		t.Errorf("wire %+v, want 3 records in at least 4 reads", ch.Wire)
	}
	if !bytes.Equal(ch.Raw, split.hello) {
		t.Error("captured message differs from what the client wrote")
	}
	// Close the pipe, not the TLS conns: their close_notify would block on
	// a peer that no longer reads.
	clientEnd.Close()
	serverEnd.Close()
}

// pipeSplitConn re-frames the first record written (the ClientHello) into
// several records and writes them in several Writes; net.Pipe delivers each
// Write to its own Read.
type pipeSplitConn struct {
	net.Conn
	recordSizes, writeSizes []int
	hello                   []byte // the handshake message, as the client wrote it
}

func (c *pipeSplitConn) Write(p []byte) (int, error) {
	if c.hello != nil {
		return c.Conn.Write(p)
	}
	c.hello = slices.Clone(p[recordHeaderLen:])
	out := reframe(p, c.recordSizes)
	for _, size := range append(slices.Clone(c.writeSizes), len(out)) {
		size = min(size, len(out))
		if size == 0 {
			break
		}
		if _, err := c.Conn.Write(out[:size]); err != nil {
			return 0, err
		}
		out = out[size:]
	}
	return len(p), nil
}

// reframe splits one record into records with the given payload sizes (and
// one more for the rest).
func reframe(record []byte, sizes []int) []byte {
	payload := record[recordHeaderLen:]
	var out []byte
	for _, size := range append(slices.Clone(sizes), len(payload)) {
		size = min(size, len(payload))
		if size == 0 {
			break
		}
		out = append(out, record[0], record[1], record[2], byte(size>>8), byte(size))
		out = append(out, payload[:size]...)
		payload = payload[size:]
	}
	return out
}

// chunkConn serves a fixed byte stream in reads of the given sizes.
type chunkConn struct {
	net.Conn // nil: only Read is used
	data     []byte
	chunk    int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// TestCaptureConnReplay replays every real capture through a CaptureConn in
// reads of several sizes, followed by the records a client sends next, and
// checks the bytes pass through untouched and the capture stops at the end
// of the ClientHello.
func TestCaptureConnReplay(t *testing.T) {
	next := []byte{20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 3, 'a', 'b', 'c'} // change_cipher_spec, application_data
	for _, e := range readCaptureIndex(t) {
		recs := readCapture(t, e.Name)
		want, err := ParseClientHelloRecords(recs)
		if err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{1, 7, 512, 1 << 16} {
			t.Run(e.Name+"/"+chunkName(chunk), func(t *testing.T) {
				stream := slices.Concat(recs, next)
				cc := NewCaptureConn(&chunkConn{data: stream, chunk: chunk}, 0)
				if _, err := cc.ClientHello(); !errors.Is(err, ErrClientHelloIncomplete) {
					t.Fatalf("before any read: %v, want ErrClientHelloIncomplete", err)
				}
				got, err := readAllChunks(cc)
				if err != nil || !bytes.Equal(got, stream) {
					t.Fatalf("read %d of %d bytes (%v): bytes must pass through", len(got), len(stream), err)
				}
				ch, err := cc.ClientHello()
				if err != nil {
					t.Fatal(err)
				}
				wantReads := (len(recs) + chunk - 1) / chunk
				if !bytes.Equal(ch.Raw, want.Raw) || ch.Wire != (WireShape{Size: want.Wire.Size, Records: want.Wire.Records, Reads: wantReads}) {
					t.Errorf("wire %+v, want %+v with %d reads", ch.Wire, want.Wire, wantReads)
				}
				if !bytes.Equal(cc.RawRecords(), recs) {
					t.Error("RawRecords differs from the records on the wire")
				}
			})
		}
	}
}

// readAllChunks reads r to EOF with a 64 KiB buffer, so that each Read returns
// what the conn has, as crypto/tls's reads do.
func readAllChunks(r io.Reader) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func chunkName(n int) string {
	if n >= 1<<16 {
		return "all"
	}
	return strings.TrimLeft(string([]byte{'0' + byte(n/100%10), '0' + byte(n/10%10), '0' + byte(n%10)}), "0")
}

// TestCaptureConnFailures checks that what cannot be captured is reported
// by ClientHello and never disturbs the bytes read.
func TestCaptureConnFailures(t *testing.T) {
	chromium := readCapture(t, "chromium")
	tests := []struct {
		name   string
		stream []byte
		limit  int
		want   string
	}{
		{"over the limit", chromium, 1000, "exceed the capture limit of 1000"},
		// 2-byte records: the 1912-byte message takes 6692 bytes of records.
		{"records over the limit", frameRecords(parseCaptures(t)["chromium"].Raw, 2), 3000, "not complete within the capture limit of 3000"},
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0, "content type 71, not handshake"},
		{"truncated", chromium[:600], 0, "ClientHello not yet complete"},
		{"bad hello", frameRecords(buildHello([]helloExt{{extEarlyData, []byte{1}}}), 1<<14), 0, "trailing bytes inside the extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := NewCaptureConn(&chunkConn{data: tt.stream, chunk: 100}, tt.limit)
			got, _ := io.ReadAll(cc)
			if !bytes.Equal(got, tt.stream) {
				t.Fatalf("read %d of %d bytes: bytes must pass through", len(got), len(tt.stream))
			}
			_, err := cc.ClientHello()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ClientHello() error %v, want %q", err, tt.want)
			}
			if _, again := cc.ClientHello(); again == nil || again.Error() != err.Error() {
				t.Errorf("second call %v, want the same error", again)
			}
		})
	}
}

// TestCaptureConnLimitKeepsHandshake checks that a ClientHello over the
// capture limit still completes its handshake: capture is best effort.
func TestCaptureConnLimitKeepsHandshake(t *testing.T) {
	clientEnd, serverEnd := net.Pipe()
	cc := NewCaptureConn(serverEnd, 64)
	srv := tls.Server(cc, &tls.Config{Certificates: []tls.Certificate{captureTestCertificate(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.HandshakeContext(ctx) }()
	client := tls.Client(clientEnd, &tls.Config{InsecureSkipVerify: true})
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if _, err := cc.ClientHello(); err == nil || !strings.Contains(err.Error(), "capture limit of 64") {
		t.Errorf("ClientHello() error %v, want the limit named", err)
	}
	// Close the pipe, not the TLS conns: their close_notify would block on
	// a peer that no longer reads.
	clientEnd.Close()
	serverEnd.Close()
}

// TestCaptureConnBufferSize checks the capture buffer is sized from the
// first record's length when that record carries the handshake header, and
// not from bytes of a later record header when records are tiny.
func TestCaptureConnBufferSize(t *testing.T) {
	msg := parseCaptures(t)["chromium"].Raw
	tests := []struct {
		name    string
		stream  []byte
		maxCap  int
		wantCap int // exact capacity; 0 to check maxCap only
	}{
		{"one record", frameRecords(msg, 1<<14), 0, recordHeaderLen + len(msg)},
		// 1-byte records: bytes 6..8 are the next record's header (22, 3,
		// 1), which read as a length would ask for the whole limit.
		{"one-byte records", frameRecords(msg, 1), 2 * (recordHeaderLen + 1) * len(msg), 0},
		{"two-byte records", frameRecords(msg, 2), 2 * (recordHeaderLen + 2) * len(msg) / 2, 0},
		// A 100-byte record whose handshake header announces 60,000 bytes,
		// then silence: the buffer holds what arrived, not what was
		// announced (a stalled client must not make the server hold 60 KB).
		{"announced but not sent", slices.Concat([]byte{recordTypeHandshake, 3, 1, 0, 100, handshakeTypeClientHello, 0, 0xea, 0x5c}, make([]byte, 96)),
			0, recordHeaderLen + 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := NewCaptureConn(&chunkConn{data: tt.stream, chunk: 100}, 0)
			if _, err := io.ReadAll(cc); err != nil {
				t.Fatal(err)
			}
			if _, err := cc.ClientHello(); err != nil && !errors.Is(err, ErrClientHelloIncomplete) {
				t.Fatal(err)
			}
			got := cap(cc.buf)
			if tt.wantCap != 0 && got != tt.wantCap {
				t.Errorf("buffer capacity %d, want %d", got, tt.wantCap)
			}
			if tt.maxCap != 0 && got > tt.maxCap {
				t.Errorf("buffer capacity %d, want at most %d", got, tt.maxCap)
			}
		})
	}
}
