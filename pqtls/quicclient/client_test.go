package quicclient

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/quic-go/quic-go"
)

// testRTT is the emulated round-trip time of the tests that count round
// trips: flights are told apart by gaps of half of it, which must stay
// far above the scheduling delays of a loaded machine running the race
// detector (tens of milliseconds seen).
const testRTT = 200 * time.Millisecond

// startServer runs a quic-go server on loopback with a leaf +
// intermediate chain of alg, accepting groups, ALPN alpn.
func startServer(t *testing.T, alg certs.Alg, groups []tls.CurveID, alpn string) string {
	t.Helper()
	cert, _, err := certs.NewChain(alg, []string{"localhost"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{*cert}, CurvePreferences: groups, NextProtos: []string{alpn},
	}, &quic.Config{})
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
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return ln.Addr().String()
}

// TestDialMeasures checks what a user of `bench handshake -transport quic`
// reads: the group and signature, the Initial packets of the ClientHello,
// the amplification budget and, over an emulated path, the round
// trips. An ML-DSA-65 chain (~15 KB) exceeds three times the client's
// ~2.5 KB first flight: the server must wait a round trip for the
// client's acknowledgements before it may send the rest.
func TestDialMeasures(t *testing.T) {
	tests := []struct {
		name        string
		alg         certs.Alg
		groups      []tls.CurveID
		wantSig     tls.SignatureScheme
		wantPackets int
		wantLimited bool
		wantRTs     int
	}{
		{"ECDSA, X25519MLKEM768", certs.AlgECDSAP256, []tls.CurveID{tls.X25519MLKEM768}, tls.ECDSAWithP256AndSHA256, 2, false, 1},
		{"ML-DSA-65, X25519MLKEM768", certs.AlgMLDSA65, []tls.CurveID{tls.X25519MLKEM768}, tls.MLDSA65, 2, true, 2},
		{"ECDSA, x25519", certs.AlgECDSAP256, []tls.CurveID{tls.X25519}, tls.ECDSAWithP256AndSHA256, 1, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startServer(t, tt.alg, nil, "h3")
			res, err := Dial(context.Background(), addr, &Config{ServerName: "localhost", Groups: tt.groups, RTT: testRTT, WaitConfirmed: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Group != tt.groups[0] || res.Signature != tt.wantSig || res.ALPN != "h3" || res.Version != quic.Version1 {
				t.Errorf("negotiated %s %s %q %v", pqtls.GroupName(res.Group), pqtls.SignatureName(res.Signature), res.ALPN, res.Version)
			}
			if w := res.ClientHello.Wire; w.Packets != tt.wantPackets || w.Transport != pqtls.TransportQUIC {
				t.Errorf("ClientHello wire %+v, want %d Initial packets", w, tt.wantPackets)
			}
			if res.ClientFirstFlight < 1200*tt.wantPackets || res.AmplificationBudget != 3*res.ClientFirstFlight {
				t.Errorf("client first flight %d B, budget %d B", res.ClientFirstFlight, res.AmplificationBudget)
			}
			if res.AmplificationLimited != tt.wantLimited || res.RoundTrips != tt.wantRTs {
				t.Errorf("server sent %d B before its Finished against a budget of %d B (limited %v), %d round trips; want limited %v, %d round trips",
					res.ServerHandshakeBytes, res.AmplificationBudget, res.AmplificationLimited, res.RoundTrips, tt.wantLimited, tt.wantRTs)
			}
			if res.ServerHandshakeBytes < res.ChainBytes || res.BytesReceived < res.ServerHandshakeBytes || res.BytesSent < res.ClientFirstFlight {
				t.Errorf("bytes: chain %d, server handshake %d, received %d, sent %d", res.ChainBytes, res.ServerHandshakeBytes, res.BytesReceived, res.BytesSent)
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	addr := startServer(t, certs.AlgECDSAP256, []tls.CurveID{tls.X25519MLKEM768}, "h3")
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tests := []struct {
		name string
		addr string
		cfg  Config
		want string
	}{
		{"no common group", addr, Config{Groups: []tls.CurveID{tls.X25519}}, "alert:handshake_failure"},
		{"no common ALPN", addr, Config{ALPN: []string{"hq-interop"}}, "alert:no_application_protocol"},
		{"nothing answers", silent.LocalAddr().String(), Config{Timeout: 300 * time.Millisecond}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(context.Background(), tt.addr, &tt.cfg)
			if got := ErrorKind(err); got != tt.want {
				t.Errorf("error %v is %q, want %q", err, got, tt.want)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	h3 := startServer(t, certs.AlgECDSAP256, []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, "h3")
	other := startServer(t, certs.AlgECDSAP256, nil, "hq-interop")
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	groups := []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.X25519, tls.CurveP256}
	tests := []struct {
		name         string
		addr         string
		quic, http3  bool
		wantAccepted []tls.CurveID
	}{
		{"HTTP/3 server", h3, true, true, []tls.CurveID{tls.X25519MLKEM768, tls.X25519}},
		{"QUIC without h3", other, true, false, nil},
		{"no QUIC", silent.LocalAddr().String(), false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Probe(context.Background(), tt.addr, ProbeConfig{ServerName: "localhost", Timeout: 2 * time.Second, Groups: groups})
			if err != nil {
				t.Fatal(err)
			}
			if rep.QUIC != tt.quic || rep.HTTP3 != tt.http3 {
				t.Errorf("QUIC %v HTTP/3 %v (first error %v), want %v %v", rep.QUIC, rep.HTTP3, rep.FirstErr, tt.quic, tt.http3)
			}
			var accepted []tls.CurveID
			for _, g := range rep.Groups {
				if g.Accepted {
					accepted = append(accepted, g.Group)
				}
			}
			if !slices.Equal(accepted, tt.wantAccepted) {
				t.Errorf("accepted %v, want %v", accepted, tt.wantAccepted)
			}
		})
	}
	if _, err := Probe(context.Background(), "no-such-host.invalid:443", ProbeConfig{}); err == nil {
		t.Error("an unresolvable address is not an error")
	}
}
