package leanclient

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// threadCPU is the CPU time (user+system) of the calling OS thread. With
// runtime.LockOSThread it is the CPU of one goroutine, which is how the
// benchmark tells the client's cost from the server's in one process.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD, Linux
	syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startMeteredServer is a crypto/tls server that adds the CPU time of each
// connection's goroutine (handshake and the read of close_notify) to cpu.
func startMeteredServer(b *testing.B, cfg *tls.Config, cpu *atomic.Int64, done *atomic.Int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				start := threadCPU()
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() == nil {
					io.Copy(io.Discard, tc)
					done.Add(1)
				}
				c.Close()
				cpu.Add(int64(threadCPU() - start))
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkHandshake reports the client's and the server's CPU per full
// handshake (client-µs/op, server-µs/op) and their ratio, with and without
// the ShareCache and signature verification. Run with -cpu 1 for steadier
// numbers on a shared machine.
func BenchmarkHandshake(b *testing.B) {
	for _, alg := range []string{"ecdsa", "mldsa44"} {
		chain := newTestChain(b, alg)
		srvCfg := &tls.Config{Certificates: []tls.Certificate{chain.cert}, SessionTicketsDisabled: true}
		for _, mode := range []struct {
			name   string
			cache  bool
			verify bool
		}{
			{name: "fresh-verify", verify: true},
			{name: "fresh-noverify"},
			{name: "cache-noverify", cache: true},
		} {
			b.Run(alg+"/X25519MLKEM768/"+mode.name, func(b *testing.B) {
				var serverCPU, completed atomic.Int64
				addr := startMeteredServer(b, srvCfg, &serverCPU, &completed)
				cfg := &Config{
					ServerName:             "localhost",
					Groups:                 []tls.CurveID{tls.X25519MLKEM768},
					Roots:                  chain.roots,
					VerifyChain:            mode.verify,
					VerifySignature:        mode.verify,
					SkipCertificateParsing: !mode.verify,
					CloseNotify:            true,
				}
				if mode.cache {
					cfg.Precomputed = NewShareCache()
					if err := cfg.Precomputed.Precompute(tls.X25519MLKEM768); err != nil {
						b.Fatal(err)
					}
				}
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				ctx := context.Background()
				b.ResetTimer()
				start := threadCPU()
				for b.Loop() {
					if _, err := Dial(ctx, addr, cfg); err != nil {
						b.Fatal(err)
					}
				}
				clientCPU := threadCPU() - start
				b.StopTimer()
				// The server goroutine adds its CPU after the client has
				// seen the close; wait (bounded) for the last one.
				deadline := time.Now().Add(5 * time.Second)
				for completed.Load() < int64(b.N) && time.Now().Before(deadline) {
					runtime.Gosched()
				}
				n := float64(b.N)
				c := float64(clientCPU.Microseconds()) / n
				s := float64(time.Duration(serverCPU.Load()).Microseconds()) / float64(max(completed.Load(), 1))
				b.ReportMetric(c, "client-µs/op")
				b.ReportMetric(s, "server-µs/op")
				b.ReportMetric(c/s, "client/server")
			})
		}
	}
}
