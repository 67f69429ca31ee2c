package quichello

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/quic-go/quic-go"
)

// testCertificate is a self-signed ECDSA P-256 certificate for localhost.
func testCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type seenHello struct {
	ch  *pqtls.ClientHello
	err error
}

// startServer runs a quic-go server on loopback whose socket is a
// PacketConn, and reports from GetConfigForClient what the Tracker has for
// each connection.
func startServer(t *testing.T) (*net.UDPAddr, *PacketConn, <-chan seenHello) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tracker := &Tracker{}
	pc := NewPacketConn(udp, tracker)
	tr := &quic.Transport{Conn: pc}
	seen := make(chan seenHello, 8)
	conf := &tls.Config{
		Certificates: []tls.Certificate{testCertificate(t)},
		NextProtos:   []string{"h3"},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			ch, err := tracker.ClientHello(hello.Conn.RemoteAddr())
			seen <- seenHello{ch, err}
			return nil, nil
		},
	}
	ln, err := tr.Listen(conf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() { <-c.Context().Done() }()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		tr.Close()
		udp.Close()
		<-done
	})
	return udp.LocalAddr().(*net.UDPAddr), pc, seen
}

// TestPacketConnWithQUICGo serves real quic-go handshakes through a
// PacketConn and checks that GetConfigForClient gets the ClientHello the
// client sent, with the Initial packets it took.
func TestPacketConnWithQUICGo(t *testing.T) {
	addr, pc, seen := startServer(t)
	tests := []struct {
		name        string
		groups      []tls.CurveID
		wantShare   tls.CurveID
		wantPackets int // at least
	}{
		{"X25519MLKEM768 needs two Initials", []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, tls.X25519MLKEM768, 2},
		{"x25519 fits one", []tls.CurveID{tls.X25519}, tls.X25519, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := quic.DialAddr(ctx, addr.String(), &tls.Config{
				ServerName: "localhost", InsecureSkipVerify: true, NextProtos: []string{"h3"}, CurvePreferences: tt.groups,
			}, &quic.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseWithError(0, "")
			var got seenHello
			select {
			case got = <-seen:
			case <-ctx.Done():
				t.Fatal("GetConfigForClient was not called")
			}
			if got.err != nil {
				t.Fatal(got.err)
			}
			ch := got.ch
			if len(ch.KeyShares) == 0 || ch.KeyShares[0].Group != tt.wantShare {
				t.Errorf("key shares %+v, want %s first", ch.KeyShares, pqtls.GroupName(tt.wantShare))
			}
			if !slices.Equal(ch.ALPN, []string{"h3"}) || ch.ServerName != "localhost" {
				t.Errorf("ALPN %q, server name %q", ch.ALPN, ch.ServerName)
			}
			if w := ch.Wire; w.Transport != pqtls.TransportQUIC || w.Packets < tt.wantPackets || w.Datagrams < 1 || w.Size != len(ch.Raw) {
				t.Errorf("wire %+v, want QUIC with at least %d Initial packets", w, tt.wantPackets)
			}
			if !slices.Contains(ch.Extensions, 0x39) { // quic_transport_parameters (RFC 9001 Section 8.2)
				t.Errorf("extensions %v lack quic_transport_parameters", ch.Extensions)
			}
			if !strings.HasPrefix(ch.JA4(), "q13d") {
				t.Errorf("JA4 %s, want the q prefix", ch.JA4())
			}
		})
	}
	if pc.batches.Load() == 0 {
		t.Error("quic-go never called ReadBatch: the wrapper lost the batched read path")
	}
}
