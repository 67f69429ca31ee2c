package leanclient

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// memConn is a net.Conn that answers with fixed server bytes. Before the
// first read it copies the client's legacy_session_id into a ServerHello at
// the start of the reply, so that crafted and fuzzed replies get past the
// echo check (RFC 8446 Section 4.1.3) and reach the deeper parsers.
type memConn struct {
	reply   []byte
	r       *bytes.Reader
	written bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error) {
	if c.r == nil {
		c.r = bytes.NewReader(patchSessionID(c.reply, c.written.Bytes()))
	}
	return c.r.Read(p)
}
func (c *memConn) Write(p []byte) (int, error)      { return c.written.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// Offsets in a ClientHello or ServerHello record: 5 record header, 4
// handshake header, 2 version, 32 random, then the session ID length.
const sessionIDLenOffset = 5 + 4 + 2 + 32

func patchSessionID(reply, clientHello []byte) []byte {
	out := bytes.Clone(reply)
	if len(clientHello) < sessionIDLenOffset+33 || len(out) < sessionIDLenOffset+33 ||
		out[0] != recordHandshake || out[5] != typeServerHello || out[sessionIDLenOffset] != 32 {
		return out
	}
	copy(out[sessionIDLenOffset+1:sessionIDLenOffset+33], clientHello[sessionIDLenOffset+1:sessionIDLenOffset+33])
	return out
}

func loadFlight(t testing.TB, name string) (msgs [][]byte, wire []byte) {
	t.Helper()
	m, err := os.ReadFile("testdata/flights/" + name + ".msgs")
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile("testdata/flights/" + name + ".wire")
	if err != nil {
		t.Fatal(err)
	}
	return splitMessages(m), w
}

func record(typ uint8, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

func TestMalformedServerReplies(t *testing.T) {
	msgs, wire := loadFlight(t, "go-ecdsa-X25519MLKEM768")
	sh := msgs[0]
	shRecord := record(recordHandshake, sh)
	corrupt := bytes.Clone(wire)
	corrupt[len(corrupt)-1] ^= 0xff // last encrypted record: its AEAD tag

	tls12 := bytes.Clone(sh)
	// Cut the extensions off: a ServerHello without supported_versions.
	tls12 = tls12[:4+2+32+1+32+2+1]
	tls12[1], tls12[2], tls12[3] = 0, 0, byte(len(tls12)-4)

	shortShare := bytes.Clone(sh)
	// The key_share is the last extension: claim a smaller share inside
	// a message whose own lengths still add up.
	shortShare = shortShare[:len(shortShare)-1]
	fixLengths(shortShare)

	tests := []struct {
		name  string
		reply []byte
		kind  ErrorKind
		alert uint8
	}{
		// Answers that are not TLS records name what they are.
		{name: "HTTP answer", reply: []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), kind: KindNotTLS},
		{name: "random bytes", reply: bytes.Repeat([]byte{0x16, 0x99}, 40), kind: KindNotTLS},
		{name: "empty reply", reply: nil, kind: KindDial},
		{name: "truncated record header", reply: shRecord[:3], kind: KindMalformed},
		{name: "truncated record body", reply: shRecord[:len(shRecord)-10], kind: KindMalformed},
		{name: "record longer than 2^14+256", reply: []byte{22, 3, 3, 0x50, 0}, kind: KindMalformed},
		{name: "handshake length beyond record", reply: record(recordHandshake, append([]byte{2, 0, 0, 200}, 0, 0)), kind: KindMalformed},
		{name: "ServerHello lengths wrong", reply: record(recordHandshake, append([]byte{2, 0, 0, 3}, 3, 3, 0)), kind: KindMalformed},
		{name: "key share too short", reply: record(recordHandshake, shortShare), kind: KindMalformed},
		{name: "TLS 1.2 ServerHello", reply: record(recordHandshake, tls12), kind: KindUnsupported},
		{name: "alert", reply: record(recordAlert, []byte{2, 40}), kind: KindAlert, alert: 40},
		{name: "bad change_cipher_spec", reply: append(bytes.Clone(shRecord), record(recordChangeCipherSpec, []byte{2})...), kind: KindMalformed},
		{name: "encrypted record corrupted", reply: corrupt, kind: KindMalformed},
		{name: "flight cut after ServerHello", reply: wire[:len(shRecord)], kind: KindDial},
		{name: "application data before ServerHello", reply: record(recordApplicationData, make([]byte, 40)), kind: KindMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := &memConn{reply: tt.reply}
			_, err := Handshake(testContext(t), conn, &Config{Groups: []tls.CurveID{tls.X25519MLKEM768}})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *Error", err)
			}
			if e.Kind != tt.kind || e.Alert != tt.alert {
				t.Errorf("got kind %s alert %d (%v), want %s alert %d", e.Kind, e.Alert, err, tt.kind, tt.alert)
			}
		})
	}
}

// fixLengths rewrites the handshake, extensions-block and last-extension
// lengths of a ServerHello whose last extension is key_share, after its
// tail was cut.
func fixLengths(sh []byte) {
	n := len(sh) - 4
	sh[1], sh[2], sh[3] = byte(n>>16), byte(n>>8), byte(n)
	extStart := 4 + 2 + 32 + 1 + int(sh[4+2+32]) + 2 + 1
	extLen := len(sh) - extStart - 2
	sh[extStart], sh[extStart+1] = byte(extLen>>8), byte(extLen)
	// Walk to the last extension.
	p := extStart + 2
	for {
		l := int(sh[p+2])<<8 | int(sh[p+3])
		if p+4+l >= len(sh) {
			l = len(sh) - p - 4
			sh[p+2], sh[p+3] = byte(l>>8), byte(l)
			// key_share: group(2) || length(2) || share
			sl := l - 4
			sh[p+6], sh[p+7] = byte(sl>>8), byte(sl)
			return
		}
		p += 4 + l
	}
}

func TestVerifyFailures(t *testing.T) {
	good := newTestChain(t, "ecdsa")
	other := newTestChain(t, "ecdsa")
	addr, _ := startGoServer(t, &tls.Config{Certificates: []tls.Certificate{good.cert}})
	tests := []struct {
		name string
		cfg  Config
		kind ErrorKind
	}{
		{name: "unknown CA", cfg: Config{ServerName: "localhost", Roots: other.roots, VerifyChain: true}, kind: KindVerify},
		{name: "wrong name", cfg: Config{ServerName: "example.com", Roots: good.roots, VerifyChain: true}, kind: KindVerify},
		{name: "no common signature scheme", cfg: Config{SignatureAlgorithms: []tls.SignatureScheme{tls.Ed25519}}, kind: KindAlert},
		{name: "no common group", cfg: Config{Groups: []tls.CurveID{0x0200}}, kind: KindAlert},
		{name: "good", cfg: Config{ServerName: "localhost", Roots: good.roots, VerifyChain: true, VerifySignature: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(testContext(t), addr, &tt.cfg)
			if KindOf(err) != tt.kind {
				t.Errorf("got %v (kind %s), want kind %s", err, KindOf(err), tt.kind)
			}
		})
	}
}

// TestTimeout: a server that accepts and never answers gives KindTimeout.
func TestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	_, err = Dial(testContext(t), ln.Addr().String(), &Config{Timeout: 200 * time.Millisecond})
	if KindOf(err) != KindTimeout {
		t.Fatalf("got %v, want a timeout", err)
	}
}
