package leanclient

import (
	"crypto/tls"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

func TestInteropOpenSSL(t *testing.T) {
	tests := []struct {
		name       string
		alg        string
		group      string
		wantScheme tls.SignatureScheme
	}{
		{name: "X25519MLKEM768/ecdsa", alg: "ecdsa", group: "X25519MLKEM768", wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "SecP256r1MLKEM768/ecdsa", alg: "ecdsa", group: "SecP256r1MLKEM768", wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "SecP384r1MLKEM1024/ecdsa", alg: "ecdsa", group: "SecP384r1MLKEM1024", wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "MLKEM512/ecdsa", alg: "ecdsa", group: "MLKEM512", wantScheme: tls.ECDSAWithP256AndSHA256},
		{name: "MLKEM768/rsa", alg: "rsa", group: "MLKEM768", wantScheme: tls.PSSWithSHA256},
		{name: "MLKEM1024/ed25519", alg: "ed25519", group: "MLKEM1024", wantScheme: tls.Ed25519},
		{name: "X25519MLKEM768/mldsa44", alg: "mldsa44", group: "X25519MLKEM768", wantScheme: tls.MLDSA44},
		{name: "X25519MLKEM768/mldsa65", alg: "mldsa65", group: "X25519MLKEM768", wantScheme: tls.MLDSA65},
		{name: "X25519MLKEM768/mldsa87", alg: "mldsa87", group: "X25519MLKEM768", wantScheme: tls.MLDSA87},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			group, err := pqtls.ParseGroup(tt.group)
			if err != nil {
				t.Fatal(err)
			}
			srv := startOpenSSL(t, tt.alg, tt.group)
			res, err := Dial(testContext(t), srv.addr, &Config{
				ServerName:      "localhost",
				Groups:          []tls.CurveID{group},
				Roots:           srv.roots,
				VerifyChain:     true,
				VerifySignature: true,
				CloseNotify:     true,
			})
			if err != nil {
				t.Fatalf("handshake failed: %v\nopenssl: %s", err, srv.log)
			}
			if res.Group != group || res.HelloRetry {
				t.Errorf("group %s (HRR %v), want %s directly", pqtls.GroupName(res.Group), res.HelloRetry, tt.group)
			}
			if res.SignatureScheme != tt.wantScheme {
				t.Errorf("signature scheme %s, want %s", pqtls.SignatureName(res.SignatureScheme), pqtls.SignatureName(tt.wantScheme))
			}
			t.Logf("%s: server flight %d bytes, chain %d bytes", tt.name, res.ServerFlightBytes, res.ChainBytes)
		})
	}
	t.Run("HRR to SecP256r1MLKEM768", func(t *testing.T) {
		srv := startOpenSSL(t, "ecdsa", "SecP256r1MLKEM768")
		res, err := Dial(testContext(t), srv.addr, &Config{
			ServerName: "localhost",
			Groups:     []tls.CurveID{tls.X25519, tls.SecP256r1MLKEM768},
			KeyShares:  []tls.CurveID{tls.X25519},
			Roots:      srv.roots, VerifyChain: true, VerifySignature: true,
		})
		if err != nil {
			t.Fatalf("handshake failed: %v\nopenssl: %s", err, srv.log)
		}
		if !res.HelloRetry || res.Group != tls.SecP256r1MLKEM768 || res.RoundTrips != 2 {
			t.Errorf("got %+v, want SecP256r1MLKEM768 after HelloRetryRequest", res)
		}
	})
}
