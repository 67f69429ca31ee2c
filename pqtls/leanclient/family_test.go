package leanclient

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// startCaptureServer is a crypto/tls server that parses every ClientHello
// it reads, as pqedge does (pqtls.CaptureConn), and keeps them.
type captureServer struct {
	addr   string
	mu     sync.Mutex
	hellos []*pqtls.ClientHello
	errs   []error
}

func startCaptureServer(t *testing.T) *captureServer {
	t.Helper()
	chain := newTestChain(t, "ecdsa")
	s := &captureServer{}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{chain.cert},
		NextProtos:   []string{"h2"},
		GetConfigForClient: func(info *tls.ClientHelloInfo) (*tls.Config, error) {
			ch, err := info.Conn.(*pqtls.CaptureConn).ClientHello()
			s.mu.Lock()
			s.hellos, s.errs = append(s.hellos, ch), append(s.errs, err)
			s.mu.Unlock()
			return nil, nil
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				tc := tls.Server(pqtls.NewCaptureConn(c, 0), cfg)
				defer tc.Close()
				tc.SetDeadline(time.Now().Add(10 * time.Second)) // bounds a stalled client
				if tc.Handshake() == nil {
					io.Copy(io.Discard, tc)
				}
			})
		}
	})
	s.addr = ln.Addr().String()
	return s
}

func (s *captureServer) take() ([]*pqtls.ClientHello, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, e := s.hellos, s.errs
	s.hellos, s.errs = nil, nil
	return h, e
}

// TestFamilyOfLeanClient: every ClientHello the lean client sends, in each
// shape pqedge's probe and bench use, is recognised by pqtls as family
// "pqedge", so that pqedge's own traffic does not count as visitors.
func TestFamilyOfLeanClient(t *testing.T) {
	s := startCaptureServer(t)
	ticketRes, err := Dial(testContext(t), s.addr, &Config{ServerName: "localhost", ReadTicket: true, CloseNotify: true})
	if err != nil || ticketRes.Session == nil {
		t.Fatalf("no session to resume: %v", err)
	}
	s.take()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"defaults", Config{}},
		{"server name and ALPN", Config{ServerName: "localhost", ALPN: []string{"h2", "http/1.1"}}},
		{"IP address, no server_name", Config{ServerName: "127.0.0.1"}},
		{"several groups and shares", Config{Groups: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}, KeyShares: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}},
		{"GREASE share (the probe's HelloRetryRequest test)", Config{Groups: []tls.CurveID{greaseGroup, tls.X25519}, KeyShares: []tls.CurveID{greaseGroup}}},
		{"one signature algorithm", Config{SignatureAlgorithms: []tls.SignatureScheme{tls.MLDSA44}}},
		{"bench load mode", Config{Precomputed: NewShareCache(), SkipCertificateParsing: true}},
		{"asks for a ticket", Config{ServerName: "localhost", ReadTicket: true}},
		{"resumes", Config{ServerName: "localhost", Session: ticketRes.Session}},
		{"split ClientHello", Config{SplitClientHello: SplitRecords | SplitWrites, SplitDelay: time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.CloseNotify = true
			Dial(testContext(t), s.addr, &cfg) // some shapes fail on purpose (a GREASE-only offer); the hello is what counts
			hellos, errs := s.take()
			if len(hellos) != 1 || errs[0] != nil {
				t.Fatalf("captured %d hellos (%v), want 1", len(hellos), errs)
			}
			if got := hellos[0].Family(); got != pqtls.FamilyPQEdge {
				t.Errorf("Family() = %q, want %q; extensions %v, versions %v, suites %v", got, pqtls.FamilyPQEdge,
					hellos[0].Extensions, hellos[0].SupportedVersions, hellos[0].CipherSuites)
			}
		})
	}

	t.Run("a whole probe", func(t *testing.T) {
		if _, err := Probe(testContext(t), s.addr, ProbeConfig{ServerName: "localhost"}); err != nil {
			t.Fatal(err)
		}
		hellos, _ := s.take()
		if len(hellos) < 20 {
			t.Fatalf("captured %d hellos from a probe", len(hellos))
		}
		for i, h := range hellos {
			if h == nil {
				continue // a split hello a read limit cut: not this test's subject
			}
			if got := h.Family(); got != pqtls.FamilyPQEdge {
				t.Errorf("probe hello %d: Family() = %q, extensions %v", i, got, fmt.Sprint(h.Extensions))
			}
		}
	})
}
