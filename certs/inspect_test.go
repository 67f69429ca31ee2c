package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the bytes written through it.
type countingConn struct {
	net.Conn
	written *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// TestEstimateFlightMatchesCryptoTLS measures the first flight a crypto/tls
// server really writes and compares it with EstimateFlight, so the numbers
// `pqedge certs inspect` prints are checked against the implementation that
// serves them.
func TestEstimateFlightMatchesCryptoTLS(t *testing.T) {
	tests := []struct {
		name         string
		root, inter  Alg // inter "" for no intermediate
		leaf         Alg
		slack        int // DER ECDSA signatures vary by a few bytes
		wantFits     bool
		wantFitsKnow bool // whether wantFits is asserted
		defaultInter bool // an intermediate of InitCA's default algorithm
	}{
		// What `pqedge certs init --intermediate` and `certs issue` make
		// with their defaults, whatever the root.
		{name: "defaults under an mldsa87 root", root: AlgMLDSA87, defaultInter: true, leaf: AlgMLDSA44, wantFits: true, wantFitsKnow: true},
		{name: "defaults under an mldsa65 root", root: AlgMLDSA65, defaultInter: true, leaf: AlgMLDSA44, wantFits: true, wantFitsKnow: true},
		{name: "ecdsa-p256 leaf", root: AlgECDSAP384, leaf: AlgECDSAP256, slack: 4, wantFits: true, wantFitsKnow: true},
		{name: "mldsa44 leaf + mldsa44 intermediate", root: AlgMLDSA87, inter: AlgMLDSA44, leaf: AlgMLDSA44, wantFits: true, wantFitsKnow: true},
		{name: "mldsa65 leaf + mldsa65 intermediate", root: AlgMLDSA87, inter: AlgMLDSA65, leaf: AlgMLDSA65, wantFits: false, wantFitsKnow: true},
		{name: "mldsa87 leaf + mldsa87 intermediate", root: AlgMLDSA87, inter: AlgMLDSA87, leaf: AlgMLDSA87, wantFits: false, wantFitsKnow: true},
		{name: "mldsa65 leaf, no intermediate", root: AlgMLDSA65, leaf: AlgMLDSA65},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := InitCA(t.TempDir(), CAOptions{Alg: tt.root, Intermediate: tt.inter != "" || tt.defaultInter, IntermediateAlg: tt.inter})
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ca.Issue(LeafOptions{Names: []string{"flight.test"}, Alg: tt.leaf})
			if err != nil {
				t.Fatal(err)
			}
			info, _ := DescribeKey(leaf.Leaf.PublicKey)
			est := EstimateFlight(leaf.Certificate, info)

			roots := x509.NewCertPool()
			roots.AddCert(ca.Root)
			var written atomic.Int64
			c1, c2 := net.Pipe()
			defer c1.Close()
			// Bounds a broken handshake, which would block on the pipe.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				// No session tickets: Go sends them before reading the
				// client's Finished, which would blur the first flight.
				s := tls.Server(countingConn{c2, &written}, &tls.Config{
					Certificates: []tls.Certificate{*leaf}, NextProtos: []string{"h2"},
					SessionTicketsDisabled: true,
				})
				errc <- s.HandshakeContext(ctx)
			}()
			c := tls.Client(c1, &tls.Config{RootCAs: roots, ServerName: "flight.test", NextProtos: []string{"h2"}})
			if err := c.HandshakeContext(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			st := c.ConnectionState()
			if st.CurveID != tls.X25519MLKEM768 || st.NegotiatedProtocol != "h2" {
				t.Fatalf("negotiated %v %q; the estimate assumes X25519MLKEM768 and h2", st.CurveID, st.NegotiatedProtocol)
			}
			got := int(written.Load())
			if d := got - est.Total; d < -tt.slack || d > tt.slack {
				t.Fatalf("crypto/tls wrote %d bytes, EstimateFlight says %d (%+v)", got, est.Total, est)
			}
			if tt.wantFitsKnow && est.FitsInitialWindow != tt.wantFits {
				t.Errorf("FitsInitialWindow = %v for %d bytes", est.FitsInitialWindow, est.Total)
			}
			t.Logf("%s: first flight %d B (estimate %d B), chain adds %d B", tt.name, got, est.Total, est.ChainBytes())
		})
	}
}

func TestDescribeChain(t *testing.T) {
	ca, err := InitCA(t.TempDir(), CAOptions{Alg: AlgMLDSA87, Intermediate: true, IntermediateAlg: AlgMLDSA65})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(LeafOptions{Names: []string{"a.test", "10.0.0.1"}, Alg: AlgMLDSA44})
	if err != nil {
		t.Fatal(err)
	}
	infos, err := DescribeChain([]*x509.Certificate{leaf.Leaf, ca.Intermediate, ca.Root})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		alg             Alg
		sigBytes        int
		ca, self, chain bool
	}{
		{AlgMLDSA44, 3309, false, false, true}, // signed by the ML-DSA-65 intermediate
		{AlgMLDSA65, 4627, true, false, true},  // signed by the ML-DSA-87 root
		{AlgMLDSA87, 4627, true, true, false},
	}
	for i, w := range want {
		got := infos[i]
		if got.Key.Alg != w.alg || got.SignatureBytes != w.sigBytes || got.IsCA != w.ca || got.SelfSigned != w.self || got.SignedByNext != w.chain {
			t.Errorf("cert %d: %+v, want %+v", i, got, w)
		}
	}
	if len(infos[0].Names) != 2 {
		t.Errorf("names %v", infos[0].Names)
	}
	// Out of order: the leaf is not signed by the root.
	infos, err = DescribeChain([]*x509.Certificate{leaf.Leaf, ca.Root})
	if err != nil {
		t.Fatal(err)
	}
	if infos[0].SignedByNext {
		t.Error("leaf reported as signed by the root")
	}
}
