package leanclient

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// resumeDial runs one handshake that reads a ticket, offering sess, and
// returns what the client and the crypto/tls server saw.
func resumeDial(t *testing.T, addr string, results <-chan serverResult, cfg Config, sess *Session) (*Result, tls.ConnectionState) {
	t.Helper()
	cfg.Session = sess
	cfg.ReadTicket = true
	cfg.CloseNotify = true
	res, err := Dial(testContext(t), addr, &cfg)
	if err != nil {
		t.Fatalf("handshake failed: %v", err)
	}
	srv := <-results
	if srv.err != nil {
		t.Fatalf("server failed: %v", srv.err)
	}
	return res, srv.state
}

func TestResumeGoServer(t *testing.T) {
	chain := newTestChain(t, "ecdsa")
	type tc struct {
		name   string
		groups []tls.CurveID
		shares []tls.CurveID
		pref   []tls.CurveID // server CurvePreferences; nil = all servable
		suite  uint16
		hrr    bool
	}
	var tests []tc
	for _, g := range []tls.CurveID{tls.X25519MLKEM768, tls.X25519} {
		for _, s := range DefaultCipherSuites {
			tests = append(tests, tc{name: pqtls.GroupName(g) + "/" + tls.CipherSuiteName(s), groups: []tls.CurveID{g}, suite: s})
		}
	}
	tests = append(tests, tc{
		// The server wants the hybrid the client listed without a share:
		// both handshakes retry, and the resumed one recomputes its binder
		// over message_hash + HelloRetryRequest (RFC 8446 Section 4.2.11.2).
		name:   "HRR to X25519MLKEM768",
		groups: []tls.CurveID{tls.X25519, tls.X25519MLKEM768}, shares: []tls.CurveID{tls.X25519},
		pref: []tls.CurveID{tls.X25519MLKEM768}, hrr: true,
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pref := tt.pref
			if pref == nil {
				pref = allServableGroups
			}
			addr, results := startGoServer(t, &tls.Config{
				Certificates: []tls.Certificate{chain.cert}, CurvePreferences: pref, MinVersion: tls.VersionTLS13,
			})
			cfg := Config{ServerName: "localhost", Groups: tt.groups, KeyShares: tt.shares, Roots: chain.roots, VerifyChain: true, VerifySignature: true}
			if tt.suite != 0 {
				cfg.CipherSuites = []uint16{tt.suite}
			}
			full, st := resumeDial(t, addr, results, cfg, nil)
			if full.Resumed || st.DidResume || full.Session == nil {
				t.Fatalf("first handshake: resumed %v/%v, session %v", full.Resumed, st.DidResume, full.Session)
			}
			if full.Session.CipherSuite != st.CipherSuite || len(full.Session.PSK) == 0 || full.Session.Lifetime <= 0 {
				t.Errorf("session %+v, server suite %#04x", full.Session, st.CipherSuite)
			}
			res, st := resumeDial(t, addr, results, cfg, full.Session)
			if !res.Resumed || !st.DidResume {
				t.Fatalf("second handshake: client resumed %v, server %v", res.Resumed, st.DidResume)
			}
			if res.HelloRetry != tt.hrr || st.HelloRetryRequest != tt.hrr {
				t.Errorf("HelloRetry: client %v, server %v, want %v", res.HelloRetry, st.HelloRetryRequest, tt.hrr)
			}
			if res.Group != st.CurveID || res.Group != full.Group {
				t.Errorf("resumed with group %s (server %s), full handshake had %s", pqtls.GroupName(res.Group), pqtls.GroupName(st.CurveID), pqtls.GroupName(full.Group))
			}
			if res.SignatureScheme != 0 || res.RawCertificates != nil || res.ServerFlightBytes >= full.ServerFlightBytes {
				t.Errorf("resumed flight has a certificate: scheme %s, %d certificates, %d B (full %d B)",
					pqtls.SignatureName(res.SignatureScheme), len(res.RawCertificates), res.ServerFlightBytes, full.ServerFlightBytes)
			}
			if res.Session == nil || bytes.Equal(res.Session.PSK, full.Session.PSK) {
				t.Errorf("resumed handshake brought no fresh ticket: %+v", res.Session)
			}
		})
	}
}

// TestResumeDeclined: after the server's ticket keys change, the old
// ticket no longer decrypts and the server falls back to a full handshake,
// whose ticket resumes again.
func TestResumeDeclined(t *testing.T) {
	chain := newTestChain(t, "ecdsa")
	srvCfg := &tls.Config{Certificates: []tls.Certificate{chain.cert}, MinVersion: tls.VersionTLS13}
	addr, results := startGoServer(t, srvCfg)
	cfg := Config{ServerName: "localhost", Roots: chain.roots, VerifyChain: true, VerifySignature: true}
	first, _ := resumeDial(t, addr, results, cfg, nil)
	if first.Session == nil {
		t.Fatal("no ticket")
	}
	var key [32]byte
	rand.Read(key[:])
	srvCfg.SetSessionTicketKeys([][32]byte{key})
	declined, st := resumeDial(t, addr, results, cfg, first.Session)
	if declined.Resumed || st.DidResume {
		t.Fatalf("resumed with a ticket from old keys: client %v, server %v", declined.Resumed, st.DidResume)
	}
	if declined.SignatureScheme != tls.ECDSAWithP256AndSHA256 || len(declined.Certificates) != 2 {
		t.Errorf("fallback was not a full, verified handshake: %+v", declined)
	}
	again, st := resumeDial(t, addr, results, cfg, declined.Session)
	if !again.Resumed || !st.DidResume {
		t.Errorf("the fallback's ticket did not resume: client %v, server %v", again.Resumed, st.DidResume)
	}
}

// TestResumeBadBinder: the server checks the binder, so a session whose PSK
// is wrong ends in decrypt_error rather than a resumption.
func TestResumeBadBinder(t *testing.T) {
	chain := newTestChain(t, "ecdsa")
	addr, results := startGoServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}})
	cfg := Config{ServerName: "localhost"}
	first, _ := resumeDial(t, addr, results, cfg, nil)
	bad := *first.Session
	bad.PSK = bytes.Clone(bad.PSK)
	bad.PSK[0] ^= 1
	cfg.Session = &bad
	_, err := Dial(testContext(t), addr, &cfg)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindAlert || e.Alert != 51 {
		t.Fatalf("got %v, want a decrypt_error alert", err)
	}
	<-results
}

func TestSessionUsable(t *testing.T) {
	now := time.Now()
	good := Session{Ticket: []byte("leanclient test ticket identity"), PSK: make([]byte, 32), CipherSuite: tls.TLS_AES_128_GCM_SHA256,
		Lifetime: time.Hour, Received: now.Add(-time.Minute), ServerName: "localhost"}
	tests := []struct {
		name   string
		edit   func(s *Session)
		server string
		want   bool
	}{
		{name: "fresh", edit: func(*Session) {}, server: "localhost", want: true},
		{name: "expired", edit: func(s *Session) { s.Received = now.Add(-2 * time.Hour) }, server: "localhost"},
		{name: "other server name", edit: func(*Session) {}, server: "example.com"},
		{name: "unknown suite", edit: func(s *Session) { s.CipherSuite = 0x1304 }, server: "localhost"},
		{name: "no ticket", edit: func(s *Session) { s.Ticket = nil }, server: "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.edit(&s)
			if got := s.usable(tt.server, now); got != tt.want {
				t.Errorf("usable = %v, want %v", got, tt.want)
			}
			// An unusable session must not reach the wire.
			conn := &memConn{}
			Handshake(t.Context(), conn, &Config{ServerName: tt.server, Session: &s})
			offered := bytes.Contains(conn.written.Bytes(), s.Ticket) && len(s.Ticket) > 0
			if offered != tt.want {
				t.Errorf("ticket offered %v, want %v", offered, tt.want)
			}
		})
	}
	var nilSession *Session
	if nilSession.usable("localhost", now) {
		t.Error("nil session usable")
	}
}

func TestResumeOpenSSL(t *testing.T) {
	for _, group := range []string{"X25519MLKEM768", "x25519"} {
		t.Run(group, func(t *testing.T) {
			id, err := pqtls.ParseGroup(group)
			if err != nil {
				t.Fatal(err)
			}
			srv := startOpenSSL(t, "ecdsa", group, "-num_tickets", "1")
			cfg := &Config{ServerName: "localhost", Groups: []tls.CurveID{id}, Roots: srv.roots, VerifyChain: true,
				VerifySignature: true, ReadTicket: true, CloseNotify: true}
			full, err := Dial(testContext(t), srv.addr, cfg)
			if err != nil {
				t.Fatalf("full handshake failed: %v\nopenssl: %s", err, srv.log)
			}
			if full.Resumed || full.Session == nil {
				t.Fatalf("full handshake: resumed %v, session %v\nopenssl: %s", full.Resumed, full.Session, srv.log)
			}
			cfg.Session = full.Session
			res, err := Dial(testContext(t), srv.addr, cfg)
			if err != nil {
				t.Fatalf("resumed handshake failed: %v\nopenssl: %s", err, srv.log)
			}
			if !res.Resumed || res.Group != id || res.RawCertificates != nil {
				t.Errorf("resumed %v, group %s, %d certificates", res.Resumed, pqtls.GroupName(res.Group), len(res.RawCertificates))
			}
		})
	}
}

// TestCaptureTickets refreshes the NewSessionTicket seeds in
// testdata/tickets with -update; without it, it checks they still parse.
func TestCaptureTickets(t *testing.T) {
	if !*update {
		files, _ := filepath.Glob("testdata/tickets/*.msg")
		if len(files) == 0 {
			t.Fatal("no saved tickets in testdata/tickets; run go test -run TestCaptureTickets -update")
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parseNewSessionTicket(data); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
		return
	}
	capture := func(name, addr string) {
		var last []byte
		cfg := &Config{ServerName: "localhost", ReadTicket: true, CloseNotify: true, onMessage: func(m []byte) { last = m }}
		res, err := Dial(testContext(t), addr, cfg)
		if err != nil || res.Session == nil || last[0] != typeNewSessionTicket {
			t.Fatalf("%s: no ticket (%v)", name, err)
		}
		os.MkdirAll("testdata/tickets", 0o755)
		if err := os.WriteFile(filepath.Join("testdata/tickets", name+".msg"), last, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	chain := newTestChain(t, "ecdsa")
	addr, _ := startGoServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}})
	capture("go", addr)
	capture("openssl", startOpenSSL(t, "ecdsa", "X25519MLKEM768", "-num_tickets", "1").addr)
}

// FuzzNewSessionTicket feeds the NewSessionTicket parser with mutations of
// real tickets from crypto/tls and OpenSSL.
func FuzzNewSessionTicket(f *testing.F) {
	files, _ := filepath.Glob("testdata/tickets/*.msg")
	if len(files) == 0 {
		f.Fatal("no saved tickets in testdata/tickets")
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		nst, err := parseNewSessionTicket(msg)
		if err != nil {
			if KindOf(err) == 0 {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if len(nst.ticket) == 0 || nst.lifetime > maxTicketLifetimeSecond {
			t.Fatalf("accepted a forbidden ticket: %+v", nst)
		}
	})
}

// TestServerHelloPSKChecks: a ServerHello may select only the offered PSK,
// identity 0, with a suite of the session's hash (RFC 8446 Section 4.2.11).
func TestServerHelloPSKChecks(t *testing.T) {
	sha384 := &Session{Ticket: []byte("t"), PSK: make([]byte, 48), CipherSuite: tls.TLS_AES_256_GCM_SHA384}
	tests := []struct {
		name    string
		offered *Session
		suite   uint16
		id      uint16
		wantErr bool
	}{
		{name: "accepted", offered: sha384, suite: tls.TLS_AES_256_GCM_SHA384},
		{name: "not offered", suite: tls.TLS_AES_128_GCM_SHA256, wantErr: true},
		{name: "identity 1", offered: sha384, suite: tls.TLS_AES_256_GCM_SHA384, id: 1, wantErr: true},
		{name: "other hash", offered: sha384, suite: tls.TLS_AES_128_GCM_SHA256, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := &handshakeState{cfg: &Config{}, res: &Result{}, session: tt.offered}
			if tt.offered != nil {
				hs.hello.psk = &pskOffer{identity: tt.offered.Ticket}
			}
			hs.sh = &serverHello{raw: []byte{typeServerHello, 0, 0, 0}, suite: tt.suite, hasKeyShare: true, hasPSK: true, pskIdentity: tt.id}
			err := hs.checkServerHello()
			if (err != nil) != tt.wantErr || (err != nil && KindOf(err) != KindMalformed) {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if hs.res.Resumed != !tt.wantErr {
				t.Errorf("Resumed = %v", hs.res.Resumed)
			}
		})
	}
}
