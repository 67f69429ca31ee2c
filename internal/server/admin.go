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
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /adoption", &pages.AdoptionPage{Adoption: s.adoption, Now: s.now})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.serveReadyz)   // readiness.go
	mux.HandleFunc("GET /anycast", s.serveAnycast) // anycast_admin.go
	mux.HandleFunc("GET /fleet", s.serveFleet)     // fleet_admin.go
	a := &adminListener{addr: want, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: adminReadHeader, IdleTimeout: adminIdle}}
	go a.srv.Serve(ln)
	t.admin = a
	return nil
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
