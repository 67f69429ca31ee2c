package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// TestRunReplay floods an in-process crypto/tls server with replayed
// ClientHellos: every attempt gets the whole flight, and the server sees
// one ClientHello per attempt (and one for the calibrating handshake).
func TestRunReplay(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"closed loop", Options{Count: 30, Concurrency: 4}},
		{"open loop", Options{Count: 20, Concurrency: 4, Rate: 2000}},
		{"spread sources", Options{Count: 10, Concurrency: 2, Sources: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hellos atomic.Int64
			addr := tlsServerWith(t, certs.AlgECDSAP256, func(c *tls.Config) {
				c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
					hellos.Add(1)
					return nil, nil
				}
			})
			opts := tt.opts
			opts.Target, opts.Replay = addr, true
			r, err := Run(context.Background(), opts)
			if err != nil {
				t.Fatalf("Run: %v (errors %+v)", err, r)
			}
			if r.Succeeded != opts.Count || r.Failed != 0 || r.Attempts != opts.Count {
				t.Fatalf("succeeded %d failed %d attempts %d, want %d/0/%d; errors %+v", r.Succeeded, r.Failed, r.Attempts, opts.Count, opts.Count, r.Errors)
			}
			p := r.Replay
			if p == nil || p.Client != ReplayClient || p.Pool != replayPool || p.FlightRecords != 6 || p.ClientHelloBytes < 1200 {
				t.Fatalf("replay shape %+v", p)
			}
			// ECDSA signatures differ by a few bytes from flight to flight.
			if r.ClientBytes != float64(p.ClientHelloBytes) || r.ServerBytes < float64(p.FlightBytes-4) || r.ServerBytes > float64(p.FlightBytes+4) {
				t.Errorf("bytes per attempt: client %v, server %v; ClientHello %d B, flight %d B", r.ClientBytes, r.ServerBytes, p.ClientHelloBytes, p.FlightBytes)
			}
			if r.Group != "X25519MLKEM768" || r.Signature != "ecdsa_secp256r1_sha256" {
				t.Errorf("negotiated %s, %s", r.Group, r.Signature)
			}
			// The server's handshake goroutines may still be parsing
			// when the client is done; each had its ClientHello read
			// before the flight went out, so the count is final.
			if got := hellos.Load(); got != int64(opts.Count)+1 {
				t.Errorf("the server saw %d ClientHellos, want %d (one per attempt and the calibration)", got, opts.Count+1)
			}
			var table bytes.Buffer
			if err := WriteTable(&table, r); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{ReplayClient, "whole flights/s", "6 records"} {
				if !strings.Contains(table.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, table.String())
				}
			}
			var csvOut bytes.Buffer
			if err := WriteReportCSV(&csvOut, r); err != nil {
				t.Fatal(err)
			}
			rows, err := csv.NewReader(&csvOut).ReadAll()
			if err != nil || len(rows) != 2 || rows[1][slices.Index(rows[0], "client")] != "replay" {
				t.Errorf("CSV %v: %v", rows, err)
			}
			js, _ := json.Marshal(r)
			if !bytes.Contains(js, []byte(`"client":"`+ReplayClient+`"`)) {
				t.Errorf("JSON lacks the replay client: %s", js)
			}
		})
	}
}

// readClientHello reads one TLS record from c (the replayed ClientHello)
// so that a close afterwards is a FIN, not a reset for unread bytes.
func readClientHello(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, c, int64(hdr[3])<<8|int64(hdr[4]))
	return err
}

// TestRunReplayErrors: after the calibrating handshake (the server's
// first connection) every connection fails one way, and the report names
// the way.
func TestRunReplayErrors(t *testing.T) {
	tests := []struct {
		kind  string
		serve func(c net.Conn)
	}{
		{"short-flight", func(c net.Conn) {
			if readClientHello(c) == nil {
				c.Write([]byte{22, 3, 3, 0, 90, 2, 0, 0, 86, 3, 3}) // the start of a ServerHello
			}
		}},
		{"reset", func(c net.Conn) {
			readClientHello(c)
			c.(*net.TCPConn).SetLinger(0)
		}},
		{"timeout", func(c net.Conn) {
			readClientHello(c)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 1)) // until the client gives up
		}},
		{"not-tls", func(c net.Conn) {
			if readClientHello(c) == nil {
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"))
			}
		}},
		{"alert:handshake_failure", func(c net.Conn) {
			if readClientHello(c) == nil {
				c.Write([]byte{21, 3, 3, 0, 2, 2, 40})
			}
		}},
	}
	chain, err := MakeChain(t.TempDir(), certs.AlgECDSAP256, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{*chain.Cert}}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			var conns atomic.Int64
			addr := listen(t, func(c net.Conn) {
				defer c.Close()
				if conns.Add(1) == 1 {
					tc := tls.Server(c, cfg)
					tc.SetDeadline(time.Now().Add(5 * time.Second))
					if tc.Handshake() == nil {
						tc.Read(make([]byte, 1)) // the client's close_notify
					}
					return
				}
				tt.serve(c)
			})
			r, err := Run(context.Background(), Options{Target: addr, Replay: true, Count: 3, Concurrency: 3, Timeout: 300 * time.Millisecond})
			if !errors.Is(err, ErrNoSuccess) {
				t.Fatalf("Run: %v, want ErrNoSuccess", err)
			}
			if len(r.Errors) != 1 || r.Errors[0].Kind != tt.kind || r.Errors[0].Count != 3 {
				t.Fatalf("errors %+v, want 3 of %s", r.Errors, tt.kind)
			}
			if r.Replay == nil {
				t.Error("a failed replay run does not say it was one")
			}
		})
	}
}

func TestReplayRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = plainConnDial(context.Background(), addr, time.Second)
	if got := replayErrorKind(err); got != "refused" {
		t.Fatalf("dial to a closed port: %v, kind %q, want refused", err, got)
	}
}

// TestRunReplayRefuses: what a replay cannot do is a setup error, and a
// server that wants a HelloRetryRequest fails the calibration.
func TestRunReplayRefuses(t *testing.T) {
	addr := tlsServerWith(t, certs.AlgECDSAP256, func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519} })
	for _, opts := range []Options{
		{Target: addr, Count: 1, Replay: true, Resume: true},
		{Target: addr, Count: 1, Replay: true, Request: "/"},
		{Target: addr, Count: 1, Replay: true, Transport: TransportQUIC},
		{Target: addr, Count: 1, Replay: true, Groups: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}},
	} {
		if r, err := Run(context.Background(), opts); err == nil || errors.Is(err, ErrNoSuccess) {
			t.Errorf("Run(%+v) = %+v, %v; want a setup error", opts, r, err)
		}
	}
}
