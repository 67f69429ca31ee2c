package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// startHTTPUpstream is a plain HTTP upstream serving body at BenchPath.
func startHTTPUpstream(t *testing.T, body []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(BenchPath, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// httpsServer is crypto/tls + net/http answering BenchPath with body and
// anything else with 404.
func httpsServer(t *testing.T, body []byte) string {
	t.Helper()
	chain, err := MakeChain(t.TempDir(), certs.AlgECDSAP256, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*chain.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(BenchPath, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestRunWithRequest(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1024)
	addr := httpsServer(t, body)
	t.Run("200", func(t *testing.T) {
		r, err := Run(context.Background(), Options{Target: addr, Count: 12, Concurrency: 3, Precompute: true, Request: BenchPath})
		if err != nil {
			t.Fatalf("Run: %v (%+v)", err, r)
		}
		if r.Succeeded != 12 || r.Request != BenchPath || r.ResponseBytes < float64(len(body)) {
			t.Errorf("succeeded %d, request %q, response %.0f B; want 12, %q, > %d B", r.Succeeded, r.Request, r.ResponseBytes, BenchPath, len(body))
		}
		// The response's records come on top of the handshake's.
		if r.ServerBytes < float64(r.ServerFlightBytes)+r.ResponseBytes {
			t.Errorf("server bytes %.0f < flight %d + response %.0f", r.ServerBytes, r.ServerFlightBytes, r.ResponseBytes)
		}
		var table, csvOut bytes.Buffer
		WriteTable(&table, r)
		if !strings.Contains(table.String(), "GET "+BenchPath) {
			t.Errorf("table does not name the request:\n%s", table.String())
		}
		WriteReportCSV(&csvOut, r)
		rows, err := csv.NewReader(&csvOut).ReadAll()
		if err != nil || len(rows) != 2 || rows[1][len(rows[1])-2] != BenchPath || rows[1][len(rows[1])-1] == "" {
			t.Errorf("CSV %v: %v", rows, err)
		}
	})
	t.Run("404", func(t *testing.T) {
		r, err := Run(context.Background(), Options{Target: addr, Count: 3, Request: "/missing"})
		if !errors.Is(err, ErrNoSuccess) {
			t.Fatalf("err = %v, want ErrNoSuccess", err)
		}
		if len(r.Errors) != 1 || r.Errors[0].Kind != "http-404" || r.Errors[0].Count != 3 {
			t.Errorf("errors %+v, want 3 of kind http-404", r.Errors)
		}
	})
	t.Run("bad paths", func(t *testing.T) {
		for _, p := range []string{"bench", "/a b", "/a\r\nX: y", "/\x7f"} {
			if _, err := Run(context.Background(), Options{Target: addr, Count: 1, Request: p}); err == nil || errors.Is(err, ErrNoSuccess) {
				t.Errorf("request %q: got %v, want a setup error", p, err)
			}
		}
	})
}

// plainProxyLauncher is the matrix's plain server with an upstream,
// in the test process (inProcessPlainProxy, as bench proxy's tests use).
type plainProxyLauncher struct{}

func (plainProxyLauncher) Kind() string                      { return ServerPlain }
func (plainProxyLauncher) Signer(alg CertAlg) (string, bool) { return string(alg.Signer), true }
func (plainProxyLauncher) Start(ctx context.Context, spec ServerSpec) (*Process, error) {
	if spec.Upstream == "" {
		return nil, errors.New("no upstream in the spec")
	}
	f, err := inProcessPlainProxy{}.StartProxy(ctx, ProxySpec{Chain: spec.Chain, Groups: spec.Groups, Upstream: spec.Upstream})
	if err != nil {
		return nil, err
	}
	return f.Process, nil
}

func TestMatrixWithRequest(t *testing.T) {
	alg, err := ParseCertAlg("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	upstream := startHTTPUpstream(t, bytes.Repeat([]byte("y"), 512))
	opts := MatrixOptions{
		Groups: []tls.CurveID{tls.X25519MLKEM768}, Certs: []CertAlg{alg},
		Servers: []Launcher{plainProxyLauncher{}}, Runs: 2, Duration: 100 * time.Millisecond,
		Concurrency: 2, PrimitiveTime: 2 * time.Millisecond, Log: io.Discard,
		Request: BenchPath, Upstream: upstream,
	}
	opts.Dir = t.TempDir()
	res, err := Matrix(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Request != BenchPath || len(res.Cells) != 1 {
		t.Fatalf("request %q, %d cells", res.Request, len(res.Cells))
	}
	if c := res.Cells[0]; c.Error != "" || c.ServerCPU <= 0 || c.ServerBytes < 512 {
		t.Errorf("cell: %+v", c)
	}
	var judged bool
	for _, ch := range res.Checks {
		judged = judged || strings.Contains(ch.Name, "1.05x")
	}
	if !judged {
		t.Errorf("no 1.05x check among %+v", res.Checks)
	}
	var table bytes.Buffer
	WriteMatrixTable(&table, res)
	if !strings.Contains(table.String(), "GET "+BenchPath) {
		t.Errorf("table does not name the request:\n%s", table.String())
	}

	// A path the upstream does not serve fails every cell, by status.
	opts.Request, opts.Dir = "/missing", t.TempDir()
	res, err = Matrix(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Cells[0]; !strings.Contains(c.Error, "http-404") {
		t.Errorf("cell error %q, want http-404", c.Error)
	}

	opts.Upstream, opts.Dir = "", t.TempDir()
	if _, err := Matrix(context.Background(), opts); err == nil {
		t.Error("a request without an upstream or peer root was accepted")
	}
}
