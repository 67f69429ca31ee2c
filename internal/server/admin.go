package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// setAdmin starts, moves or stops the admin listener to match address.
// Called with s.mu held.
func (s *Server) setAdmin(address string) error {
	if address == s.adminAt && (s.admin != nil) == (address != "") {
		return nil
	}
	var ln net.Listener
	if address != "" {
		var err error
		if ln, err = net.Listen("tcp", address); err != nil {
			return fmt.Errorf("failed to listen on %s for the admin listener: %w", address, err)
		}
	}
	if s.admin != nil {
		old := s.admin
		go func() {
			// The admin endpoints answer in milliseconds; five seconds is
			// ample for a scrape in progress.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			old.Shutdown(ctx)
		}()
		s.admin, s.adminLn = nil, nil
	}
	s.adminAt = address
	if ln == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /adoption", &adoptionHandler{a: s.adoption, now: s.now})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready: draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s.admin = &http.Server{
		Handler: mux,
		// Scrapers are trusted but may be slow or stuck: bound them.
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
	s.adminLn = ln
	go s.admin.Serve(ln)
	return nil
}
