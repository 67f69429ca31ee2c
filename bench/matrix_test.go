package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// inProcessPlain runs ServePlain in the test process: its "server CPU" is
// the whole process's, which is enough to exercise the matrix.
type inProcessPlain struct{}

// ServesQUIC: ServePlain serves HTTP/3 with PlainOptions.QUIC.
func (inProcessPlain) ServesQUIC() bool { return true }

func (inProcessPlain) Kind() string                      { return ServerPlain }
func (inProcessPlain) Signer(alg CertAlg) (string, bool) { return string(alg.Signer), true }
func (inProcessPlain) Start(ctx context.Context, spec ServerSpec) (*Process, error) {
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		errc <- ServePlain(ctx, PlainOptions{
			Listen: "127.0.0.1:0", CertFile: spec.Chain.CertFile, KeyFile: spec.Chain.KeyFile,
			Groups: spec.Groups, Signer: spec.Alg.Signer, QUIC: spec.QUIC, Ready: func(a string) { ready <- a },
		})
	})
	select {
	case addr := <-ready:
		return &Process{Addr: addr, PID: os.Getpid(), stopFn: func() { cancel(); wg.Wait() }}, nil
	case err := <-errc:
		cancel()
		return nil, err
	}
}

// brokenServer never starts, as a server with a bad config would.
type brokenServer struct{}

func (brokenServer) Kind() string                      { return ServerNginx }
func (brokenServer) Signer(alg CertAlg) (string, bool) { return "openssl", alg.Signer != "stdlib" }
func (brokenServer) Start(context.Context, ServerSpec) (*Process, error) {
	return nil, errors.New("nginx: [emerg] cannot load certificate")
}

func TestMatrix(t *testing.T) {
	var algs []CertAlg
	for _, n := range []string{"ecdsa-p256", "mldsa44-circl", "mldsa44-stdlib"} {
		a, err := ParseCertAlg(n)
		if err != nil {
			t.Fatal(err)
		}
		algs = append(algs, a)
	}
	var log bytes.Buffer
	res, err := Matrix(context.Background(), MatrixOptions{
		Groups:        []tls.CurveID{tls.X25519MLKEM768, tls.X25519},
		Certs:         algs,
		Servers:       []Launcher{inProcessPlain{}, brokenServer{}},
		Dir:           t.TempDir(),
		Runs:          2,
		Duration:      100 * time.Millisecond,
		Concurrency:   2,
		PrimitiveTime: 2 * time.Millisecond,
		Log:           &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	// plain: 2 groups x 3 certs; the broken nginx: 2 groups x 2 keys.
	if len(res.Cells) != 10 {
		t.Fatalf("%d cells, want 10:\n%s", len(res.Cells), log.String())
	}
	for _, c := range res.Cells {
		switch c.Server {
		case ServerPlain:
			if c.Error != "" || len(c.Runs) != 2 || c.ServerCPU <= 0 || c.HandshakesPerSec <= 0 || c.ServerFlightBytes <= 0 || c.Primitives <= 0 {
				t.Errorf("plain cell %s/%s: %+v", c.Group, c.Cert, c)
			}
			if c.TTFB != res.Network.ModelTTFB(c.ServerFlightBytes, c.ServerCPU) {
				t.Errorf("cell %s/%s: TTFB %v does not follow the model", c.Group, c.Cert, c.TTFB)
			}
		case ServerNginx:
			if !strings.Contains(c.Error, "cannot load certificate") || c.ServerCPU != 0 || c.HandshakesPerSec != 0 || len(c.Runs) != 0 {
				t.Errorf("failed cell reports numbers or no error: %+v", c)
			}
			if c.Cert != "ecdsa-p256" && c.Cert != "mldsa44" {
				t.Errorf("nginx cell named %q, want the key name", c.Cert)
			}
		}
	}
	if len(res.KEM) != 2 || len(res.Sign) != 3 {
		t.Errorf("primitives: %d KEM, %d sign", len(res.KEM), len(res.Sign))
	}
	if len(res.Checks) != 4 {
		t.Errorf("%d checks", len(res.Checks))
	}

	dir := t.TempDir()
	paths, err := WriteMatrixFiles(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(p, ".svg"):
			checkXML(t, data)
		case strings.HasSuffix(p, ".csv"):
			rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
			if err != nil || len(rows) != 11 {
				t.Errorf("CSV: %d rows, %v", len(rows), err)
			}
		}
	}
	var table bytes.Buffer
	WriteMatrixTable(&table, res)
	if !strings.Contains(table.String(), "FAILED") || !strings.Contains(table.String(), "TTFB") {
		t.Errorf("table:\n%s", table.String())
	}
}

// checkXML decodes the whole document: any unbalanced or unescaped markup
// is an error.
func checkXML(t *testing.T, data []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	rects := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects < 2 {
		t.Errorf("SVG has %d rects, want bars", rects)
	}
}

func TestSVGEscapesNames(t *testing.T) {
	r := &MatrixResult{Machine: `CPU <"&'>`, Network: DefaultNetwork, Runs: 1, Cells: []Cell{
		{Server: "plain<x>", Group: "X25519MLKEM768", Cert: "a&b", ServerCPU: time.Millisecond, ServerFlightBytes: 20000},
		{Server: "nginx", Group: "x25519", Cert: "ed25519", Error: "failed"},
	}}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, r); err != nil {
		t.Fatal(err)
	}
	checkXML(t, buf.Bytes())
	if strings.Contains(buf.String(), "ed25519") {
		t.Error("a failed cell is drawn")
	}
}

// TestUnmeasurableCells: only pqedge's ML-DSA cells over QUIC are skipped
// (its QUIC load client cannot verify them, go.dev/issue/82536), and the
// table says SKIPPED with the reason, not FAILED.
func TestUnmeasurableCells(t *testing.T) {
	for _, tc := range []struct {
		server, transport, cert string
		skip                    bool
	}{
		{ServerPQEdge, TransportQUIC, "mldsa44-circl", true},
		{ServerPQEdge, TransportQUIC, "mldsa65-stdlib", true},
		{ServerPQEdge, TransportQUIC, "ecdsa-p256", false},
		{ServerPQEdge, TransportTCP, "mldsa44-circl", false},
		{ServerPlain, TransportQUIC, "mldsa44-circl", false},
	} {
		t.Run(tc.server+"/"+tc.transport+"/"+tc.cert, func(t *testing.T) {
			alg, err := ParseCertAlg(tc.cert)
			if err != nil {
				t.Fatal(err)
			}
			why := unmeasurable(tc.server, tc.transport, alg)
			if (why != "") != tc.skip {
				t.Fatalf("unmeasurable = %q, want skipped %v", why, tc.skip)
			}
			if !tc.skip {
				return
			}
			var out strings.Builder
			r := &MatrixResult{Cells: []Cell{{Server: tc.server, Transport: tc.transport, Group: "X25519MLKEM768", Cert: tc.cert, Error: why, Skipped: true}}}
			if err := WriteMatrixTable(&out, r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "SKIPPED pqedge quic") || strings.Contains(out.String(), "FAILED") || !strings.Contains(out.String(), "82536") {
				t.Errorf("table:\n%s", out.String())
			}
		})
	}
}
