package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/plan"
	"github.com/pqedge/pqedge/pqtls/leanclient"
	"github.com/quic-go/quic-go"
)

// TestHandshakeFailureClasses drives real failing handshakes and checks the
// class each is counted under, as pqedge_handshake_failures_total and the
// HandshakeEvent report it.
func TestHandshakeFailureClasses(t *testing.T) {
	var mu sync.Mutex
	var events []HandshakeEvent
	dir := t.TempDir()
	rsaPair := filepath.Join(dir, "rsa")
	writeRSAPair(t, rsaPair, "rsa.test")
	cfg := loadConfig(t, dir, baseConfig+`
[timeouts]
handshake = "1s"
[[listener]]
name = "strict"
address = "127.0.0.1:0"
strict_sni = true
[[site]]
name = "local"
server_names = ["localhost", "pref.test"]
[[site.route]]
path = "/"
handler = "inspect"
[[site]]
name = "only"
server_names = ["only.test"]
[site.tls]
policy = "pq-only"
[[site.route]]
path = "/"
handler = "inspect"
[[site]]
name = "modern"
server_names = ["modern.test"]
[site.tls]
min_version = "1.3"
[[site.route]]
path = "/"
handler = "inspect"
[[site]]
name = "rsa"
server_names = ["rsa.test"]
certs = "files"
[[site.cert]]
cert = "`+rsaPair+`.crt"
key = "`+rsaPair+`.key"
[[site.route]]
path = "/"
handler = "inspect"
`)
	srv, err := New(cfg, Options{Logger: testLogger(t), OnHandshake: func(ev HandshakeEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	goTLS := func(c *tls.Config) func(addr string) {
		return func(addr string) {
			if conn, err := tls.Dial("tcp", addr, c); err == nil {
				conn.Close()
				t.Error("the handshake succeeded")
			}
		}
	}
	tests := []struct {
		name     string
		listener string
		client   func(addr string)
		reason   string
	}{
		{"plain HTTP", "https", func(addr string) {
			c := dialTimeout(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(resp, "HTTP/1.0 400 ") {
				t.Errorf("plain HTTP got %q, %v; want a 400 status line", resp, err)
			}
		}, reasonNotTLS},
		{"silent client", "https", func(addr string) {
			c := dialTimeout(t, addr)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 1)) // returns when the server gives up
		}, reasonTimeout},
		{"client gone mid-hello", "https", func(addr string) {
			c := dialTimeout(t, addr)
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
			c.Close()
		}, reasonClientClosed},
		{"TLS 1.2 client offering only secp384r1", "https",
			goTLS(&tls.Config{ServerName: "localhost", MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.CurveP384}, InsecureSkipVerify: true}),
			reasonNoCommonGroup},
		// RFC 8422 Section 5.1: the P-256 leaf is not for a TLS 1.2
		// client without P-256 in its groups (OpenSSL aborts: "wrong
		// curve"), and there is no other chain.
		{"TLS 1.2 client whose groups lack the leaf's curve", "https",
			goTLS(&tls.Config{ServerName: "localhost", MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.X25519}, InsecureSkipVerify: true}),
			reasonCertificate},
		{"classical client on pq-only", "https",
			goTLS(&tls.Config{ServerName: "only.test", CurvePreferences: []tls.CurveID{tls.X25519}, InsecureSkipVerify: true}),
			reasonNoCommonGroup},
		{"TLS 1.2 client on a min_version 1.3 site", "https",
			goTLS(&tls.Config{ServerName: "modern.test", MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true}),
			reasonVersion},
		{"client rejects the certificate", "https",
			goTLS(&tls.Config{ServerName: "localhost"}), // the local CA is not in its roots
			reasonCertificate},
		{"no chain fits the client's signature algorithms", "https", func(addr string) {
			_, err := leanclient.Dial(t.Context(), addr, &leanclient.Config{ServerName: "localhost", Groups: []tls.CurveID{tls.X25519},
				SignatureAlgorithms: []tls.SignatureScheme{tls.Ed25519}, Timeout: 5 * time.Second})
			// RFC 8446 Section 6.2: no acceptable parameters is
			// handshake_failure; internal_error would blame the server.
			var le *leanclient.Error
			if !errors.As(err, &le) || le.Kind != leanclient.KindAlert || le.Alert != 40 {
				t.Errorf("the client got %v, want the handshake_failure alert (40)", err)
			}
		}, reasonCertificate},
		// RFC 5246 Section 7.4.1.4.1: without signature_algorithms a
		// TLS 1.2 client takes SHA-1 signatures only, which crypto/tls
		// no longer makes (RFC 9155): refused before the certificate is
		// sent, as is a client listing only SHA-1 or only Ed25519
		// schemes, for the ECDSA site and the RSA site alike.
		{"TLS 1.2 without signature_algorithms", "https", tls12Refused(t, "localhost", nil, nil), reasonCertificate},
		{"TLS 1.2 without signature_algorithms, RSA site", "https", tls12Refused(t, "rsa.test", nil, nil), reasonCertificate},
		{"TLS 1.2 offering only SHA-1 schemes", "https", tls12Refused(t, "localhost", nil, []tls.SignatureScheme{tls.PKCS1WithSHA1, tls.ECDSAWithSHA1}), reasonCertificate},
		{"TLS 1.2 offering only SHA-1 schemes, RSA site", "https", tls12Refused(t, "rsa.test", nil, []tls.SignatureScheme{tls.PKCS1WithSHA1, tls.ECDSAWithSHA1}), reasonCertificate},
		{"TLS 1.2 offering only ed25519", "https", tls12Refused(t, "localhost", nil, []tls.SignatureScheme{tls.Ed25519}), reasonCertificate},
		// RFC 5246 Section 7.4.2: an RSA leaf needs an ECDHE_RSA suite.
		{"TLS 1.2 with ECDHE_ECDSA suites only, RSA site", "https",
			tls12Refused(t, "rsa.test", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, []tls.SignatureScheme{tls.PKCS1WithSHA256, tls.PSSWithSHA256}), reasonCertificate},
		{"strict_sni and an unknown name", "strict",
			goTLS(&tls.Config{ServerName: "nothing.test", InsecureSkipVerify: true}),
			reasonUnknownName},
		// RFC 6066 section 3: a host_name has no trailing dot; crypto/tls
		// refuses the ClientHello before any site is chosen, in either
		// mode, with decode_error.
		{"a server name with a trailing dot", "https", decodeErrorClient(t, "localhost."), reasonMalformed},
		{"strict_sni and a server name with a trailing dot", "strict", decodeErrorClient(t, "localhost."), reasonMalformed},
		{"strict_sni and an unknown name with a trailing dot", "strict", decodeErrorClient(t, "nothing.test."), reasonMalformed},
		{"a repeated extension", "https", func(addr string) {
			c := dialTimeout(t, addr)
			c.Write(withRepeatedExtension(t, captureClientHello(t), 0x7a7a))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ := io.ReadAll(c)
			if want := []byte{21, 3, 1, 0, 2, 2, 50}; string(got) != string(want) {
				t.Errorf("the client got %x, want the decode_error alert %x", got, want)
			}
		}, reasonMalformed},
	}
	wantErr := map[string]string{
		"no chain fits the client's signature algorithms":   certs.ErrNoVerifiableChain.Error(),
		"TLS 1.2 client whose groups lack the leaf's curve": certs.ErrNoVerifiableChain.Error(),
	}
	for _, tt := range tests {
		if strings.HasPrefix(tt.name, "TLS 1.2 with") || strings.HasPrefix(tt.name, "TLS 1.2 without") || strings.HasPrefix(tt.name, "TLS 1.2 offering") {
			wantErr[tt.name] = certs.ErrNoVerifiableChain.Error()
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			before := len(events)
			mu.Unlock()
			tt.client(ts.addr(tt.listener))
			var ev HandshakeEvent
			waitFor(t, "the handshake event", func() bool {
				mu.Lock()
				defer mu.Unlock()
				if len(events) > before {
					ev = events[before]
					return true
				}
				return false
			})
			if ev.Handshake != nil || ev.Reason != tt.reason {
				t.Errorf("counted as %q (err %v), want %q", ev.Reason, ev.Err, tt.reason)
			}
			// The event says why in pqedge's words, not crypto/tls's.
			if want := wantErr[tt.name]; want != "" && (ev.Err == nil || !strings.Contains(ev.Err.Error(), want)) {
				t.Errorf("the event's error is %v, want one saying %q", ev.Err, want)
			}
		})
	}
	for reason, want := range map[string]float64{reasonNotTLS: 1, reasonTimeout: 1, reasonClientClosed: 1, reasonNoCommonGroup: 2, reasonVersion: 1, reasonCertificate: 9, reasonMalformed: 2} {
		if got := ts.metricSum("pqedge_handshake_failures_total", `listener="https"`, `reason="`+reason+`"`); got != want {
			t.Errorf("pqedge_handshake_failures_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// tls12Refused is a client sending a TLS 1.2 ClientHello for name (see
// tls12Hello) that wants the handshake_failure alert (40) as the server's
// first record: the server refuses before it sends any of its
// certificate.
func tls12Refused(t *testing.T, name string, suites []uint16, sigs []tls.SignatureScheme) func(addr string) {
	return func(addr string) {
		c := dialTimeout(t, addr)
		defer c.Close()
		c.Write(tls12Hello(name, suites, sigs))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 7)
		n, err := io.ReadFull(c, got)
		if err != nil || got[0] != 21 || got[5] != 2 || got[6] != 40 {
			t.Errorf("the server's first record begins %x (%v), want the handshake_failure alert 15 03 03 00 02 02 28", got[:n], err)
		}
	}
}

// tls12Hello builds a TLS 1.2 ClientHello record (RFC 5246 Section
// 7.4.1.2) for name with supported_groups (X25519, P-256, P-384) and
// ec_point_formats, offering suites (nil: ECDHE_ECDSA and ECDHE_RSA
// AES-128-GCM) and, unless sigs is nil, signature_algorithms sigs.
func tls12Hello(name string, suites []uint16, sigs []tls.SignatureScheme) []byte {
	if suites == nil {
		suites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	}
	u16 := func(b []byte, v int) []byte { return append(b, byte(v>>8), byte(v)) }
	ext := func(b []byte, typ int, body []byte) []byte { return append(u16(u16(b, typ), len(body)), body...) }
	var exts []byte
	sni := u16(append(u16(nil, len(name)+3), 0), len(name)) // server_name_list, host_name
	exts = ext(exts, 0, append(sni, name...))
	exts = ext(exts, 10, []byte{0, 6, 0, 29, 0, 23, 0, 24})
	exts = ext(exts, 11, []byte{1, 0})
	if sigs != nil {
		list := u16(nil, 2*len(sigs))
		for _, s := range sigs {
			list = u16(list, int(s))
		}
		exts = ext(exts, 13, list)
	}
	body := append([]byte{3, 3}, make([]byte, 32)...) // client_version, random
	body = append(body, 0)                            // session_id
	body = u16(body, 2*len(suites))
	for _, cs := range suites {
		body = u16(body, int(cs))
	}
	body = append(body, 1, 0) // compression_methods: null
	body = append(u16(body, len(exts)), exts...)
	msg := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	return append(u16([]byte{22, 3, 1}, len(msg)), msg...)
}

// decodeErrorClient is a client sending name as its server name, which
// wants the decode_error alert (50) back.
func decodeErrorClient(t *testing.T, name string) func(addr string) {
	return func(addr string) {
		_, err := leanclient.Dial(t.Context(), addr, &leanclient.Config{ServerName: name, Timeout: 5 * time.Second})
		var le *leanclient.Error
		if !errors.As(err, &le) || le.Kind != leanclient.KindAlert || le.Alert != 50 {
			t.Errorf("the client got %v, want the decode_error alert (50)", err)
		}
	}
}

// withRepeatedExtension returns rec, a ClientHello alone in one record,
// with two empty extensions of type typ appended: RFC 8446 section 4.2
// allows one of each.
func withRepeatedExtension(t *testing.T, rec []byte, typ uint16) []byte {
	t.Helper()
	if rec[0] != 22 || rec[5] != 1 || len(rec) != 5+(int(rec[3])<<8|int(rec[4])) {
		t.Fatalf("not a ClientHello alone in one record: % x", rec[:min(len(rec), 9)])
	}
	off := 9 + 2 + 32                               // record and message headers, legacy_version, random
	off += 1 + int(rec[off])                        // legacy_session_id
	off += 2 + (int(rec[off])<<8 | int(rec[off+1])) // cipher_suites
	off += 1 + int(rec[off])                        // legacy_compression_methods
	extra := []byte{byte(typ >> 8), byte(typ), 0, 0, byte(typ >> 8), byte(typ), 0, 0}
	out := append(append([]byte(nil), rec...), extra...)
	add := func(at, size int) { // big-endian length field of size bytes
		n := 0
		for i := range size {
			n = n<<8 | int(out[at+i])
		}
		n += len(extra)
		for i := size - 1; i >= 0; i-- {
			out[at+i] = byte(n)
			n >>= 8
		}
	}
	add(3, 2)   // record length
	add(6, 3)   // handshake message length
	add(off, 2) // extensions length
	return out
}

// TestQUICMalformedHelloClass: over QUIC, crypto/tls's decode_error for a
// ClientHello comes back through quic-go as a local CRYPTO_ERROR 0x132
// (RFC 9001 section 4.8), and is counted as over TCP; after a site was
// chosen, or sent by the client, it is not a malformed ClientHello.
func TestQUICMalformedHelloClass(t *testing.T) {
	site := &plan.Site{}
	tests := []struct {
		name string
		err  error
		site *plan.Site
		want string
	}{
		{"ours, before a site", &quic.TransportError{ErrorCode: 0x100 + 50}, nil, reasonMalformed},
		{"ours, after a site", &quic.TransportError{ErrorCode: 0x100 + 50}, site, reasonOther},
		{"the client's", &quic.TransportError{ErrorCode: 0x100 + 50, Remote: true}, nil, reasonClientClosed},
		{"another alert of ours", &quic.TransportError{ErrorCode: 0x100 + 80}, nil, reasonOther},
	}
	for _, tt := range tests {
		if got := classifyQUICFailure(tt.err, nil, tt.site, false); got != tt.want {
			t.Errorf("%s: classifyQUICFailure(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}
