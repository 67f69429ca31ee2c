package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
)

// certSource builds sites' certificate selectors from their settings, for
// the certificate store (a transaction's prepare, or a refresh). The local
// development CA is shared by every site with certs = "local", so a
// developer trusts one root for all of them.
type certSource struct {
	cfg   *config.Config
	now   time.Time
	local *certs.LocalSet // made on first use
}

func (cs *certSource) selector(site config.Site) (*certs.Selector, error) {
	mode, err := certs.ParsePQMode(site.PQCerts)
	if err != nil {
		return nil, err
	}
	// A chain is served only if the client can verify every signature in
	// it (RFC 8446 section 4.4.2.2); else the next chain; else the
	// handshake fails, counted as certificate (issue 12, kind 8).
	sel := &certs.Selector{Mode: mode, VerifiableChainsOnly: true}
	for _, r := range site.PQRule {
		// Validated by package config.
		sel.ClientRules = append(sel.ClientRules, certs.ClientRule{Network: netip.MustParsePrefix(r.Network), Mode: certs.PQMode(r.Mode)})
	}
	switch site.Certs {
	case config.CertsLocal:
		set, err := cs.localSet()
		if err != nil {
			return nil, err
		}
		sel.Classical, sel.PQ = set.Classical, set.PQ
		sel.PQRoots = []*x509.Certificate{set.PQRoot}
	case config.CertsFiles, config.CertsACME:
		// The one loader of configured files, shared with `pqedge config
		// check`, so the two cannot disagree.
		loaded, err := certs.LoadFiles(config.SiteFiles(site), cs.now)
		if err != nil {
			return nil, namedFileProblems(err)
		}
		sel.Classical, sel.PQ, sel.PQRoots = loaded.Classical, loaded.PQ, loaded.PQRoots
		if site.Certs == config.CertsACME {
			// The classical chain comes from the site's ACME Manager on
			// every handshake (siteRuntime.getCertificate gives the
			// selector ClassicalFor); this placeholder stands for it.
			sel.Classical = &tls.Certificate{}
		}
	default:
		return nil, fmt.Errorf("certificate mode %q is not available in this build", site.Certs)
	}
	if sel.PQ != nil {
		kind, err := certs.ParseSignerKind(site.TLS.MLDSASigner)
		if err != nil {
			return nil, err
		}
		if err := certs.WrapSigner(sel.PQ, kind); err != nil {
			return nil, err
		}
	}
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	return sel, nil
}

// localSet creates or reuses the local CA and a leaf for the names of every
// local site.
func (cs *certSource) localSet() (*certs.LocalSet, error) {
	if cs.local != nil {
		return cs.local, nil
	}
	var names []string
	for _, s := range cs.cfg.Site {
		if s.Certs == config.CertsLocal || cs.cfg.Compat != nil && cs.cfg.Compat.Site == s.Name {
			names = append(names, s.ServerNames...)
		}
	}
	slices.Sort(names)
	set, err := certs.EnsureLocal(filepath.Join(cs.cfg.DataDir, "local"), slices.Compact(names), cs.now)
	if err != nil {
		return nil, err
	}
	cs.local = set
	return set, nil
}

// expiryDays reports days until a certificate's leaf expires.
func expiryDays(c *tls.Certificate, now time.Time) (float64, bool) {
	if c == nil || c.Leaf == nil {
		return 0, false
	}
	return c.Leaf.NotAfter.Sub(now).Hours() / 24, true
}

// namedFileProblems says which setting named each file that failed to load
// ("pq_root: ...", "cert[1].key: ..."), as config check does with a line.
func namedFileProblems(err error) error {
	var ps certs.FileProblems
	if !errors.As(err, &ps) {
		return err
	}
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = fmt.Sprintf("%s: %v", config.DisplayKey(p.Field), p.Err)
	}
	return errors.New(strings.Join(msgs, "; "))
}
