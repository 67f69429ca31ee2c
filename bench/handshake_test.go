package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// listen starts a loopback listener whose connections serve handles; it
// is closed, and every connection with it, when t ends.
func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { serve(c) })
		}
	})
	return ln.Addr().String()
}

func tlsServer(t *testing.T, alg certs.Alg) string {
	t.Helper()
	return tlsServerWith(t, alg, func(*tls.Config) {})
}

// tlsServerWith is tlsServer with its config changed by edit, and what
// the server saw of each handshake: whether it resumed.
func tlsServerWith(t *testing.T, alg certs.Alg, edit func(*tls.Config)) string {
	t.Helper()
	chain, err := MakeChain(t.TempDir(), alg, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{*chain.Cert}}
	edit(cfg)
	return listen(t, func(c net.Conn) {
		defer c.Close()
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		// Read the client's close_notify, as a real server would.
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		tc.Read(make([]byte, 1))
	})
}

func TestRunAgainstCryptoTLS(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"closed loop", Options{Count: 20, Concurrency: 3, Precompute: true}},
		{"open loop", Options{Count: 15, Concurrency: 2, Rate: 2000}},
		{"classical group", Options{Count: 5, Groups: []tls.CurveID{tls.X25519}}},
		{"hrr", Options{Count: 5, Groups: []tls.CurveID{0x0200 /* MLKEM512: no server has it */, tls.X25519MLKEM768}}},
	}
	addr := tlsServer(t, certs.AlgECDSAP256)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Target = addr
			r, err := Run(context.Background(), opts)
			if err != nil {
				t.Fatalf("Run: %v (errors %+v)", err, r)
			}
			if r.Succeeded != opts.Count || r.Failed != 0 || r.Attempts != opts.Count {
				t.Fatalf("succeeded %d failed %d attempts %d, want %d/0/%d; errors %+v", r.Succeeded, r.Failed, r.Attempts, opts.Count, opts.Count, r.Errors)
			}
			if r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
				t.Errorf("latency not ordered: %+v", r.Latency)
			}
			if r.ClientBytes <= 0 || r.ServerBytes <= 0 || r.ServerFlightBytes <= 0 || float64(r.ServerFlightBytes) > r.ServerBytes+16 { // flight is the largest; ECDSA signatures vary by a few bytes
				t.Errorf("bytes: client %v server %v flight %d", r.ClientBytes, r.ServerBytes, r.ServerFlightBytes)
			}
			if r.Signature != "ecdsa_secp256r1_sha256" {
				t.Errorf("signature %q", r.Signature)
			}
			wantHRR := tt.name == "hrr"
			if (r.HRRRate == 1) != wantHRR {
				t.Errorf("HRR rate %v, want HRR %v", r.HRRRate, wantHRR)
			}
		})
	}
}

// TestRunServerCPU reads this process's own CPU as the "server": the test
// server runs in-process, so the number must be positive, nothing more.
func TestRunServerCPU(t *testing.T) {
	addr := tlsServer(t, certs.AlgMLDSA44)
	r, err := Run(context.Background(), Options{Target: addr, Count: 30, Concurrency: 2, ServerPID: pidSelf()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Signature != "mldsa44" || r.ServerCPU <= 0 {
		t.Errorf("signature %q server CPU %v", r.Signature, r.ServerCPU)
	}
}

func TestRunFailures(t *testing.T) {
	closed := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	stall := func(t *testing.T) string {
		return listen(t, func(c net.Conn) {
			// Read the ClientHello, then say nothing until the client gives up.
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		})
	}
	garbage := func(t *testing.T) string {
		return listen(t, func(c net.Conn) {
			defer c.Close()
			c.Read(make([]byte, 4096))
			// A handshake record header announcing a ServerHello, then noise.
			c.Write(append([]byte{22, 3, 3, 0, 40, 2, 0, 0, 36}, make([]byte, 36)...))
		})
	}
	httpServer := func(t *testing.T) string {
		return listen(t, func(c net.Conn) {
			defer c.Close()
			c.Read(make([]byte, 4096))
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
		})
	}
	tests := []struct {
		name   string
		target func(*testing.T) string
		kind   string
		opts   Options
	}{
		{"closed port", closed, "dial", Options{Count: 4, Concurrency: 2}},
		{"stalling server", stall, "timeout", Options{Count: 3, Concurrency: 3, Timeout: 200 * time.Millisecond}},
		{"stalling server open loop", stall, "timeout", Options{Count: 4, Concurrency: 2, Rate: 100, Timeout: 200 * time.Millisecond}},
		{"garbage reply", garbage, "malformed", Options{Count: 3}},
		{"not TLS", httpServer, "not-tls", Options{Count: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Target = tt.target(t)
			r, err := Run(context.Background(), opts)
			if !errors.Is(err, ErrNoSuccess) {
				t.Fatalf("err = %v, want ErrNoSuccess", err)
			}
			if r.Succeeded != 0 || r.Failed != opts.Count {
				t.Fatalf("succeeded %d failed %d, want 0/%d", r.Succeeded, r.Failed, opts.Count)
			}
			if len(r.Errors) != 1 || r.Errors[0].Kind != tt.kind || r.Errors[0].Count != opts.Count {
				t.Fatalf("errors %+v, want %d of kind %s", r.Errors, opts.Count, tt.kind)
			}
			// A failed run reports no numbers.
			if r.HandshakesPerSec != 0 || r.Latency != (Latency{}) || r.ClientBytes != 0 || r.ServerCPU != 0 {
				t.Errorf("failed run reports numbers: %+v", r)
			}
		})
	}
}

func TestRunDuration(t *testing.T) {
	addr := tlsServer(t, certs.AlgEd25519)
	r, err := Run(context.Background(), Options{Target: addr, Duration: 300 * time.Millisecond, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.Succeeded == 0 || r.Failed != 0 || r.Attempts != r.Succeeded {
		t.Errorf("attempts %d succeeded %d failed %d", r.Attempts, r.Succeeded, r.Failed)
	}
}

func TestRunOptionErrors(t *testing.T) {
	for _, opts := range []Options{
		{},
		{Target: "127.0.0.1:1"},
		{Target: "127.0.0.1:1", Count: 1, Rate: -1},
	} {
		if _, err := Run(context.Background(), opts); err == nil || errors.Is(err, ErrNoSuccess) {
			t.Errorf("Run(%+v) = %v, want an option error", opts, err)
		}
	}
}

// TestRunResume counts resumptions on the server side: the report's
// resumed rate must be what crypto/tls saw, and a server that issues no
// tickets must give full handshakes and no errors.
func TestRunResume(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		noTickets bool
	}{
		{name: "closed loop", opts: Options{Count: 20, Concurrency: 2, Precompute: true}},
		{name: "open loop", opts: Options{Count: 15, Concurrency: 3, Rate: 2000}},
		{name: "server issues no tickets", opts: Options{Count: 6, Concurrency: 2}, noTickets: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var serverResumed atomic.Int64
			addr := tlsServerWith(t, certs.AlgECDSAP256, func(c *tls.Config) {
				c.SessionTicketsDisabled = tt.noTickets
				c.VerifyConnection = func(cs tls.ConnectionState) error {
					if cs.DidResume {
						serverResumed.Add(1)
					}
					return nil
				}
			})
			opts := tt.opts
			opts.Target, opts.Resume = addr, true
			r, err := Run(context.Background(), opts)
			if err != nil {
				t.Fatalf("Run: %v (errors %+v)", err, r)
			}
			if r.Succeeded != opts.Count || r.Failed != 0 {
				t.Fatalf("succeeded %d failed %d; errors %+v", r.Succeeded, r.Failed, r.Errors)
			}
			resumed := int(r.ResumedRate*float64(r.Succeeded) + 0.5)
			if !r.Resume || int64(resumed) != serverResumed.Load() {
				t.Errorf("report: resume %v, %d resumed; server resumed %d", r.Resume, resumed, serverResumed.Load())
			}
			full := r.Succeeded - resumed
			switch {
			case tt.noTickets && full != r.Succeeded:
				t.Errorf("%d resumed without tickets", resumed)
			case !tt.noTickets && (full < 1 || full > opts.Concurrency):
				t.Errorf("%d full handshakes, want one per worker that ran (1..%d)", full, opts.Concurrency)
			}
			if r.Signature != "ecdsa_secp256r1_sha256" {
				t.Errorf("signature %q, want the full handshakes' ecdsa", r.Signature)
			}
		})
	}
}
