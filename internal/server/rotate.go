package server

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
)

// defaultCertCheckInterval is how often certificate files are checked for
// changes and local certificates for renewal: often enough that a renewed
// file is live within a minute, rarely enough that stat calls cost nothing.
const defaultCertCheckInterval = 30 * time.Second

// certLoop rotates certificates until the server stops.
func (s *Server) certLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.refreshCerts()
		}
	}
}

// refreshCerts re-issues local certificates that are due, and reloads the
// certificates of every site whose files changed. New handshakes get the new
// chain; connections already established keep theirs. A site whose new
// files fail to load keeps serving its current certificates.
func (s *Server) refreshCerts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	gen := s.current.Load()
	cs := &certSource{cfg: gen.cfg, now: s.now()}
	for _, site := range gen.sites {
		if site.cfg.Certs == "" || site.cfg.Certs == config.CertsLocal {
			if !localDue(site.selector.Load(), cs.now) {
				break // nothing to renew: spare re-reading the CA every tick
			}
			// EnsureLocal rewrites the leaves, which changes their
			// fingerprint below.
			if _, err := cs.localSet(); err != nil {
				s.log.Error("failed to renew local certificates; serving the current ones", "err", err)
				s.metrics.certReloadFailures.WithLabelValues(site.name).Inc()
			}
			break
		}
	}
	for name, site := range gen.sites {
		inputs := certInputs(gen.cfg, site.cfg)
		if inputs == site.inputs || inputs == site.failedInputs {
			continue
		}
		sel, err := cs.selector(site.cfg)
		if err != nil {
			site.failedInputs = inputs // log once per change, not every tick
			s.log.Error("failed to load changed certificates; serving the current ones", "site", name, "err", err)
			s.metrics.certReloadFailures.WithLabelValues(name).Inc()
			continue
		}
		site.selector.Store(sel)
		site.inputs, site.failedInputs = inputs, ""
		s.setExpiry(name, sel)
		s.log.Info("certificates rotated", "site", name)
	}
	// ACME certificates renew in their Manager's own goroutine; only the
	// expiry gauge follows them here.
	s.refreshACMEExpiry(gen)
}

// localDue reports whether a chain of the local CA is within
// certs.LocalRenewBefore of its end (and EnsureLocal would re-issue it).
func localDue(sel *certs.Selector, now time.Time) bool {
	for _, c := range []*tls.Certificate{sel.Classical, sel.PQ} {
		if c != nil && c.Leaf != nil && now.Add(certs.LocalRenewBefore).After(c.Leaf.NotAfter) {
			return true
		}
	}
	return false
}

// certInputs fingerprints the files a site's certificates come from (path,
// size and modification time), so a change is noticed without parsing.
func certInputs(cfg *config.Config, site config.Site) string {
	var files []string
	switch site.Certs {
	case "", config.CertsLocal:
		files = certs.LocalLeafFiles(filepath.Join(cfg.DataDir, "local"))
	case config.CertsFiles, config.CertsACME: // an ACME site's files are its ML-DSA pair
		for _, p := range site.Cert {
			files = append(files, p.Cert, p.Key)
		}
	}
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", f)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}
