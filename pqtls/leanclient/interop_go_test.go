package leanclient

import (
	"crypto/tls"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

var allServableGroups = []tls.CurveID{
	tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521,
}

func TestInteropGoServer(t *testing.T) {
	chains := map[string]testChain{}
	for _, alg := range []string{"ecdsa", "rsa", "ed25519", "mldsa44", "mldsa65", "mldsa87"} {
		chains[alg] = newTestChain(t, alg)
	}
	tests := []struct {
		name       string
		alg        string
		groups     []tls.CurveID // client supported_groups
		shares     []tls.CurveID // client key shares
		serverPref []tls.CurveID // server CurvePreferences; nil = all servable
		suite      uint16
		wantGroup  tls.CurveID
		wantScheme tls.SignatureScheme
		wantHRR    bool
	}{
		{name: "X25519MLKEM768/ecdsa", alg: "ecdsa", groups: []tls.CurveID{tls.X25519MLKEM768}, wantGroup: tls.X25519MLKEM768, wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "SecP256r1MLKEM768/ecdsa", alg: "ecdsa", groups: []tls.CurveID{tls.SecP256r1MLKEM768}, wantGroup: tls.SecP256r1MLKEM768, wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "SecP384r1MLKEM1024/ecdsa", alg: "ecdsa", groups: []tls.CurveID{tls.SecP384r1MLKEM1024}, wantGroup: tls.SecP384r1MLKEM1024, wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "MLKEM1024/ecdsa", alg: "ecdsa", groups: []tls.CurveID{tls.MLKEM1024}, wantGroup: tls.MLKEM1024, wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "x25519/rsa", alg: "rsa", groups: []tls.CurveID{tls.X25519}, wantGroup: tls.X25519, wantScheme: tls.PSSWithSHA256},
		{name: "secp256r1/ed25519", alg: "ed25519", groups: []tls.CurveID{tls.CurveP256}, wantGroup: tls.CurveP256, wantScheme: tls.Ed25519},
		{name: "secp384r1/ecdsa", alg: "ecdsa", groups: []tls.CurveID{tls.CurveP384}, wantGroup: tls.CurveP384, wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "X25519MLKEM768/mldsa44", alg: "mldsa44", groups: []tls.CurveID{tls.X25519MLKEM768}, wantGroup: tls.X25519MLKEM768, wantScheme: tls.MLDSA44},
		{name: "X25519MLKEM768/mldsa65", alg: "mldsa65", groups: []tls.CurveID{tls.X25519MLKEM768}, wantGroup: tls.X25519MLKEM768, wantScheme: tls.MLDSA65},
		{name: "X25519MLKEM768/mldsa87", alg: "mldsa87", groups: []tls.CurveID{tls.X25519MLKEM768}, wantGroup: tls.X25519MLKEM768, wantScheme: tls.MLDSA87},
		{name: "AES-256/ecdsa", alg: "ecdsa", groups: []tls.CurveID{tls.X25519MLKEM768}, suite: tls.TLS_AES_256_GCM_SHA384, wantGroup: tls.X25519MLKEM768, wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "ChaCha20/ecdsa", alg: "ecdsa", groups: []tls.CurveID{tls.X25519}, suite: tls.TLS_CHACHA20_POLY1305_SHA256, wantGroup: tls.X25519, wantScheme: tls.ECDSAWithP256AndSHA256},
		{
			// RFC 8446 Section 4.1.4: the server supports only a hybrid the
			// client listed but sent no share for.
			name: "HRR x25519 share, server requires hybrid", alg: "ecdsa",
			groups: []tls.CurveID{tls.X25519, tls.X25519MLKEM768}, shares: []tls.CurveID{tls.X25519},
			serverPref: []tls.CurveID{tls.X25519MLKEM768},
			wantGroup:  tls.X25519MLKEM768, wantScheme: tls.ECDSAWithP256AndSHA256, wantHRR: true,
		},
		{
			name: "HRR GREASE share", alg: "mldsa44",
			groups: []tls.CurveID{greaseGroup, tls.SecP256r1MLKEM768}, shares: []tls.CurveID{greaseGroup},
			suite:     tls.TLS_AES_256_GCM_SHA384,
			wantGroup: tls.SecP256r1MLKEM768, wantScheme: tls.MLDSA44, wantHRR: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain := chains[tt.alg]
			pref := tt.serverPref
			if pref == nil {
				pref = allServableGroups
			}
			addr, results := startGoServer(t, &tls.Config{
				Certificates:     []tls.Certificate{chain.cert},
				CurvePreferences: pref,
				MinVersion:       tls.VersionTLS13,
			})
			cfg := &Config{
				ServerName:      "localhost",
				Groups:          tt.groups,
				KeyShares:       tt.shares,
				Roots:           chain.roots,
				VerifyChain:     true,
				VerifySignature: true,
				CloseNotify:     true,
			}
			if tt.suite != 0 {
				cfg.CipherSuites = []uint16{tt.suite}
			}
			res, err := Dial(testContext(t), addr, cfg)
			if err != nil {
				t.Fatalf("handshake failed: %v", err)
			}
			srv := <-results
			if srv.err != nil {
				t.Fatalf("server failed: %v", srv.err)
			}
			if res.Group != tt.wantGroup || srv.state.CurveID != tt.wantGroup {
				t.Errorf("group: client %s, server %s, want %s", pqtls.GroupName(res.Group), pqtls.GroupName(srv.state.CurveID), pqtls.GroupName(tt.wantGroup))
			}
			if res.HelloRetry != tt.wantHRR || srv.state.HelloRetryRequest != tt.wantHRR {
				t.Errorf("HelloRetry: client %v, server %v, want %v", res.HelloRetry, srv.state.HelloRetryRequest, tt.wantHRR)
			}
			if res.CipherSuite != srv.state.CipherSuite {
				t.Errorf("cipher suite: client %#04x, server %#04x", res.CipherSuite, srv.state.CipherSuite)
			}
			if tt.suite != 0 && res.CipherSuite != tt.suite {
				t.Errorf("cipher suite %#04x, want %#04x", res.CipherSuite, tt.suite)
			}
			if res.SignatureScheme != tt.wantScheme {
				t.Errorf("signature scheme %s, want %s", pqtls.SignatureName(res.SignatureScheme), pqtls.SignatureName(tt.wantScheme))
			}
			if len(res.Certificates) != 2 || res.ChainBytes != len(chain.cert.Certificate[0])+len(chain.cert.Certificate[1]) {
				t.Errorf("got %d certificates, %d bytes", len(res.Certificates), res.ChainBytes)
			}
			wantRT := 1
			if tt.wantHRR {
				wantRT = 2
			}
			if res.RoundTrips != wantRT {
				t.Errorf("round trips %d, want %d", res.RoundTrips, wantRT)
			}
			if res.ServerFlightBytes <= res.ChainBytes || res.BytesReceived < res.ServerFlightBytes || res.BytesSent < res.ClientHelloBytes {
				t.Errorf("byte counts do not add up: %+v", res)
			}
		})
	}
}
