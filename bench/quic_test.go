package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// testShapeRTT is the emulated round-trip time of the tests that count round
// trips: flights are told apart by gaps of half of it, which must stay
// far above the scheduling delays of a loaded machine running the race
// detector (tens of milliseconds seen).
const testShapeRTT = 200 * time.Millisecond

// startPlainQUIC runs ServePlain with HTTP/3 in the test process.
func startPlainQUIC(t *testing.T, alg certs.Alg) string {
	t.Helper()
	chain, err := MakeChain(t.TempDir(), alg, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- ServePlain(ctx, PlainOptions{Listen: "127.0.0.1:0", CertFile: chain.CertFile, KeyFile: chain.KeyFile, QUIC: true,
			Ready: func(a string) { ready <- a }})
	}()
	t.Cleanup(func() { cancel(); <-errc })
	select {
	case addr := <-ready:
		return addr
	case err := <-errc:
		t.Fatal(err)
	}
	return ""
}

// TestRunQUIC is `pqedge bench handshake -transport quic` against the
// plain server's HTTP/3 side: the report has the transport, the shape of
// the handshake and no TCP-only numbers.
func TestRunQUIC(t *testing.T) {
	tests := []struct {
		name        string
		alg         certs.Alg
		wantLimited bool
		wantRTs     int
	}{
		{"ECDSA P-256 fits the budget", certs.AlgECDSAP256, false, 1},
		{"ML-DSA-65 exceeds it", certs.AlgMLDSA65, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startPlainQUIC(t, tt.alg)
			rep, err := Run(context.Background(), Options{Target: addr, Transport: TransportQUIC, Count: 4, Concurrency: 2, ShapeRTT: testShapeRTT})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Transport != TransportQUIC || rep.Succeeded != 4 || rep.Group != "X25519MLKEM768" || rep.ClientBytes < 2400 || rep.ServerBytes <= 0 {
				t.Errorf("report %+v", rep)
			}
			q := rep.QUIC
			if q == nil || q.Handshakes != 3 || q.InitialPackets != 2 || q.AmplificationLimited != tt.wantLimited || q.RoundTrips != tt.wantRTs {
				t.Fatalf("shape %+v, want limited %v in %d round trips", q, tt.wantLimited, tt.wantRTs)
			}
			if rep.ServerFlightBytes != q.ServerHandshakeBytes || rep.ExceedsInitCwnd {
				t.Errorf("flight %d B (exceeds initcwnd %v), want the shape's %d B", rep.ServerFlightBytes, rep.ExceedsInitCwnd, q.ServerHandshakeBytes)
			}
			var table, csvOut bytes.Buffer
			WriteTable(&table, rep)
			for _, want := range []string{"transport", "2 Initial packets", "round trips"} {
				if !strings.Contains(table.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, table.String())
				}
			}
			if err := WriteReportCSV(&csvOut, rep); err != nil {
				t.Fatal(err)
			}
			rows, err := csv.NewReader(&csvOut).ReadAll()
			if err != nil || len(rows) != 2 || rows[1][slices.Index(rows[0], "transport")] != TransportQUIC {
				t.Errorf("CSV %v, %v", rows, err)
			}
		})
	}
}

func TestRunQUICRefuses(t *testing.T) {
	for _, opts := range []Options{
		{Target: "127.0.0.1:1", Transport: "sctp", Count: 1},
		{Target: "127.0.0.1:1", Transport: TransportQUIC, Resume: true, Count: 1},
		{Target: "127.0.0.1:1", Transport: TransportQUIC, SignatureAlgorithms: []tls.SignatureScheme{tls.MLDSA44}, Count: 1},
	} {
		if _, err := Run(context.Background(), opts); err == nil {
			t.Errorf("%+v: no error", opts)
		}
	}
}

// TestMatrixQUIC runs the matrix's transport axis against the plain
// server: every QUIC cell beside its TCP cell, and the comparison says
// which pays an extra round trip.
func TestMatrixQUIC(t *testing.T) {
	var algs []CertAlg
	for _, n := range []string{"ecdsa-p256", "mldsa65-circl"} {
		a, err := ParseCertAlg(n)
		if err != nil {
			t.Fatal(err)
		}
		algs = append(algs, a)
	}
	var log bytes.Buffer
	res, err := Matrix(context.Background(), MatrixOptions{
		Groups: []tls.CurveID{tls.X25519MLKEM768}, Certs: algs, Transports: []string{TransportTCP, TransportQUIC},
		Servers: []Launcher{inProcessPlain{}, brokenServer{}}, Dir: t.TempDir(), Runs: 2, Duration: 150 * time.Millisecond,
		Concurrency: 2, PrimitiveTime: 2 * time.Millisecond, ShapeRTT: testShapeRTT, Log: &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	// plain: 2 certs x 2 transports; the broken nginx serves no QUIC: 2 TCP cells.
	if len(res.Cells) != 6 {
		t.Fatalf("%d cells, want 6:\n%s", len(res.Cells), log.String())
	}
	for _, c := range res.Cells {
		if c.Transport == TransportQUIC && (c.QUIC == nil || c.ServerFlightBytes != c.QUIC.ServerHandshakeBytes || len(c.Runs) != 2) {
			t.Errorf("quic cell %s: flight %d B, shape %+v, %d runs", c.Cert, c.ServerFlightBytes, c.QUIC, len(c.Runs))
		}
	}
	cmps := CompareTransports(res)
	if len(cmps) != 2 {
		t.Fatalf("%d comparisons, want 2:\n%s", len(cmps), log.String())
	}
	for _, c := range cmps {
		wantQUIC, wantTCP := 0, 0
		if c.Cert == "mldsa65-circl" {
			wantQUIC, wantTCP = 1, 1 // ~15.8 KB: over both the 3x budget and TCP's 14.6 KB window
		}
		if c.QUICExtra != wantQUIC || c.TCPExtra != wantTCP {
			t.Errorf("%s: QUIC +%d (shape %+v), TCP +%d; want +%d and +%d", c.Cert, c.QUICExtra, c.QUIC, c.TCPExtra, wantQUIC, wantTCP)
		}
	}
	var table bytes.Buffer
	WriteMatrixTable(&table, res)
	if !strings.Contains(table.String(), "QUIC handshake shape") || !strings.Contains(table.String(), "extra round trip over both") {
		t.Errorf("table:\n%s", table.String())
	}
	if !strings.Contains(log.String(), "nginx: no quic cells") {
		t.Errorf("log does not say nginx was left out:\n%s", log.String())
	}
}
