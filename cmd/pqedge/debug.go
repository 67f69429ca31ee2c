package main

import (
	"expvar"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugListenUsage documents the -debug-listen flag of `run` and `bench
// serve-plain`.
const debugListenUsage = "debug: serve Go profiles (/debug/pprof/) and runtime counters (/debug/vars) on this loopback `ADDR`; `pqedge bench proxy` reads them (see docs/BENCHMARKS.md)"

// startDebugListener serves net/http/pprof and expvar on addr, which must
// be a loopback address: profiles expose the process's memory and code
// paths and must never be reachable from the network. It returns the
// address it listens on.
//
// It is a debugging aid for benchmarks, not an admin endpoint: the admin
// listener (metrics, health) is configured in the config file.
func startDebugListener(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-debug-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", fmt.Errorf("-debug-listen %q: not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("failed to listen on -debug-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/vars", expvar.Handler())
	srv := &http.Server{
		Handler: mux,
		// Only the harness or a developer talks to it, but a stuck client
		// must not hold a goroutine forever. No write timeout: a CPU
		// profile answers after its full duration.
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
	go srv.Serve(ln)
	return ln.Addr().String(), nil
}
