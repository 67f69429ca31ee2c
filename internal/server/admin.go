package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pqedge/pqedge/internal/pages"
)

// adminListener serves metrics, health, readiness, the anycast state and
// the adoption page.
type adminListener struct {
	addr string // as configured
	ln   net.Listener
	srv  *http.Server
}

// Bounds on the admin listener: scrapers are trusted but may be slow or
// stuck, and its answers take milliseconds.
const (
	adminReadHeader = 5 * time.Second
	adminIdle       = time.Minute
	adminDrain      = 5 * time.Second // a scrape in progress when it moves or stops
)

// openAdmin opens the admin listener when the new config moves it. It
// starts serving at once: the endpoints read the server's state, not the
// generation's.
func (t *txn) openAdmin() error {
	s := t.s
	s.mu.Lock()
	cur := ""
	if s.admin != nil {
		cur = s.admin.addr
	}
	s.mu.Unlock()
	want := t.plan.Admin
	if want == cur {
		return nil
	}
	t.adminMoved = true
	if want == "" {
		return nil
	}
	ln, err := net.Listen("tcp", want)
	if err != nil {
		return fmt.Errorf("failed to listen on %s for the admin listener: %w", want, err)
	}
	mux := http.NewServeMux()
	for _, e := range s.adminEndpoints() {
		mux.Handle("GET "+e.path, e.handler)
	}
	mux.HandleFunc("GET /{$}", s.serveAdminIndex)
	a := &adminListener{addr: want, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: adminReadHeader, IdleTimeout: adminIdle}}
	go a.srv.Serve(ln)
	t.admin = a
	return nil
}

// adminEndpoint is one page of the admin listener.
type adminEndpoint struct {
	path, what string
	handler    http.Handler
}

// adminEndpoints lists the admin listener's pages, for its mux and its
// index.
func (s *Server) adminEndpoints() []adminEndpoint {
	return []adminEndpoint{
		{"/metrics", "Prometheus metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})},
		{"/healthz", "the process is alive (always 200)", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })},
		{"/readyz", "200 when serving, 503 with the failed check otherwise (?format=json)", http.HandlerFunc(s.serveReadyz)}, // readiness.go
		{"/adoption", "post-quantum share of handshakes by client family (?format=json)", &pages.AdoptionPage{Adoption: s.adoption, Now: s.now}},
		{"/anycast", "announced prefixes and their transitions (?format=json)", http.HandlerFunc(s.serveAnycast)}, // anycast_admin.go
		{"/fleet", "fleet store, ticket keys and locks (?format=json)", http.HandlerFunc(s.serveFleet)},           // fleet_admin.go
	}
}

// serveAdminIndex lists the admin pages at /.
func (s *Server) serveAdminIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "pqedge admin listener")
	for _, e := range s.adminEndpoints() {
		if e.path == "/anycast" && s.anycast.Load() == nil {
			continue // a 404 until the config has an [anycast] block
		}
		fmt.Fprintf(w, "  %-10s %s\n", e.path, e.what)
	}
}

// close stops an admin listener that never served a committed config.
func (a *adminListener) close() { a.srv.Close() }

// shutdownSoon lets scrapes in progress finish, then stops.
func (a *adminListener) shutdownSoon() {
	ctx, cancel := context.WithTimeout(context.Background(), adminDrain)
	defer cancel()
	a.shutdown(ctx)
}

func (a *adminListener) shutdown(ctx context.Context) error {
	if err := a.srv.Shutdown(ctx); err != nil {
		a.srv.Close()
		return err
	}
	return nil
}
