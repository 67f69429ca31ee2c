//go:build unix

package certs

import (
	"crypto"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/tls"
	"syscall"
	"testing"
	"time"
)

// Run with:
//
//	go test ./certs -run '^$' -bench 'Sign|Handshake' -cpu 1 -benchtime 2s
//
// Besides ns/op (wall time), each benchmark reports cpu-ns/op: the process's
// user+system CPU time per operation, which other load on a shared machine
// disturbs far less than wall time.
//
// BenchmarkSign measures one ML-DSA signature of a TLS 1.3 CertificateVerify
// sized message with each implementation.
func BenchmarkSign(b *testing.B) {
	// TLS 1.3 signs 64 spaces, a context string, a zero byte and a
	// transcript hash (RFC 8446 Section 4.4.3): 130 bytes with SHA-256.
	msg := make([]byte, 130)
	for _, a := range mldsaAlgs {
		std := mustKey(b, a).(*mldsa.PrivateKey)
		circl, err := NewCirclSigner(std)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range []struct {
			kind   SignerKind
			signer crypto.Signer
		}{{SignerCircl, circl}, {SignerStdlib, std}} {
			b.Run(string(s.kind)+"/"+string(a), func(b *testing.B) {
				cpu := startCPU(b)
				for b.Loop() {
					if _, err := s.signer.Sign(rand.Reader, msg, crypto.Hash(0)); err != nil {
						b.Fatal(err)
					}
				}
				cpu.report(b)
			})
		}
	}
}

// BenchmarkHandshake runs full TLS 1.3 handshakes (X25519MLKEM768, no
// resumption) between a crypto/tls server and client over net.Pipe. Both
// sides run in this process, so ns/op is client plus server; the client is
// the same in every case (it skips chain verification but checks the
// CertificateVerify signature), so differences between signers are server
// signing time.
func BenchmarkHandshake(b *testing.B) {
	cases := []struct {
		name string
		leaf Alg
		kind SignerKind
	}{
		{"ecdsa-p256", AlgECDSAP256, ""},
		{"mldsa44/stdlib", AlgMLDSA44, SignerStdlib},
		{"mldsa44/circl", AlgMLDSA44, SignerCircl},
		{"mldsa65/stdlib", AlgMLDSA65, SignerStdlib},
		{"mldsa65/circl", AlgMLDSA65, SignerCircl},
		{"mldsa87/stdlib", AlgMLDSA87, SignerStdlib},
		{"mldsa87/circl", AlgMLDSA87, SignerCircl},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ca, err := InitCA(b.TempDir(), CAOptions{Alg: AlgECDSAP384})
			if err != nil {
				b.Fatal(err)
			}
			leaf, err := ca.Issue(LeafOptions{Names: []string{"bench.test"}, Alg: c.leaf})
			if err != nil {
				b.Fatal(err)
			}
			if c.kind != "" {
				if err := WrapSigner(leaf, c.kind); err != nil {
					b.Fatal(err)
				}
			}
			server := &tls.Config{Certificates: []tls.Certificate{*leaf}, SessionTicketsDisabled: true,
				CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}}
			client := &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}}
			cpu := startCPU(b)
			for b.Loop() {
				if st := handshakePipe(b, server, client); st.CurveID != tls.X25519MLKEM768 {
					b.Fatalf("negotiated %v", st.CurveID)
				}
			}
			cpu.report(b)
		})
	}
}

// cpuClock reads the process's CPU time around a benchmark loop.
type cpuClock struct{ start time.Duration }

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) cpuClock { return cpuClock{processCPU(b)} }

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(processCPU(b)-c.start)/float64(b.N), "cpu-ns/op")
}
