package server

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/plan"
)

// defaultCertCheckInterval is how often certificate files are checked for
// changes and local certificates for renewal: often enough that a renewed
// file is live within a minute, rarely enough that reading a few kilobytes
// of PEM costs nothing.
const defaultCertCheckInterval = 30 * time.Second

// Compat matrix leaves are issued in memory by the local CA; they are
// re-issued when half their life is gone, by the certificate loop.
const (
	compatLeafValidity    = 30 * 24 * time.Hour
	compatLeafRenewBefore = compatLeafValidity / 2
)

// certStore is the server's certificate state across generations: one
// entry per site (and per compat combination), holding the chains its
// handshakes are served from. A transaction prepares the entries of its
// plan (prepare), reusing an entry whose settings and files did not change
// so its state carries over; commit makes them the ones the certificate
// loop keeps current (refresh). A generation's sites point at their
// entries; nothing in a generation changes when certificates rotate.
//
// Called from the transaction (prepare, commit, under Server.txnMu) and
// from the certificate loop (refresh); mu serialises them. It does file
// I/O under mu, never network I/O.
type certStore struct {
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex // guards entries and every entry's seen and failed
	entries map[string]*certEntry
}

// certEntry is the chains of one site or compat combination. sel is
// swapped by refresh; everything else is set when it is made.
type certEntry struct {
	key  string // the settings it was made from; equal keys share an entry
	site string // for metrics and logs
	kind string // "site" or "compat"
	sel  atomic.Pointer[certs.Selector]
	// load builds the selector from the entry's settings.
	load func(cs *certSource) (*certs.Selector, error)
	// files lists the files the selector is built from, whose contents
	// tell a change (a same-size `cp -p` too).
	files func() []string
	// due reports a chain that must be re-issued (local CA leaves).
	due func(sel *certs.Selector, now time.Time) bool

	seen, failed string // content fingerprint of the current and of the last failed files
}

func (e *certEntry) selector() *certs.Selector { return e.sel.Load() }

// certBatch is the entries one transaction prepared, by site name (and
// "compat/ALG" for combinations).
type certBatch struct {
	entries map[string]*certEntry
	local   *certs.LocalSet // the local CA set it used; nil without local sites
}

func newCertStore(log *slog.Logger, m *metrics) *certStore {
	return &certStore{log: log, metrics: m, entries: map[string]*certEntry{}}
}

// prepare makes or reuses the entries of every site of p and of its compat
// matrix. It reads certificate files and may issue local certificates.
func (st *certStore) prepare(p *plan.Plan, now time.Time) (*certBatch, error) {
	cs := &certSource{cfg: p.Config, now: now}
	b := &certBatch{entries: map[string]*certEntry{}}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, s := range p.Sites {
		e, err := st.siteEntry(cs, s.Config)
		if err != nil {
			return nil, fmt.Errorf("site %q: %w", s.Name, err)
		}
		b.entries[s.Name] = e
	}
	if c := p.Compat; c != nil {
		for _, combo := range c.Combinations {
			name := "compat/" + string(combo.Cert)
			if b.entries[name] != nil {
				continue
			}
			e, err := st.compatEntry(cs, c.Site, combo.Cert, now)
			if err != nil {
				return nil, fmt.Errorf("compat: %w", err)
			}
			b.entries[name] = e
		}
	}
	b.local = cs.local
	if cs.local != nil && len(cs.local.Issued) > 0 {
		st.log.Info("issued local development certificates", "dir", cs.local.Dir, "files", cs.local.Issued,
			"hint", "trust the local CA with `pqedge certs trust "+cs.local.Dir+"`")
	}
	return b, nil
}

// siteEntry returns the entry of a site: the existing one when its settings
// and files are unchanged, else a new one loaded now. st.mu held.
func (st *certStore) siteEntry(cs *certSource, sc config.Site) (*certEntry, error) {
	local := sc.Certs == config.CertsLocal
	if local {
		// Issue or renew first: the files the fingerprint reads may change.
		if _, err := cs.localSet(); err != nil {
			return nil, err
		}
	}
	e := &certEntry{
		key:  fmt.Sprintf("site %q %#v", sc.Name, certSettings(sc)),
		site: sc.Name, kind: "site",
		load: func(cs *certSource) (*certs.Selector, error) { return cs.selector(sc) },
		files: func() []string {
			if local {
				return certs.LocalLeafFiles(filepath.Join(cs.cfg.DataDir, "local"))
			}
			var files []string // an ACME site's files are its ML-DSA pair
			for _, p := range sc.Cert {
				files = append(files, p.Cert, p.Key)
			}
			if sc.PQRoot != "" {
				files = append(files, sc.PQRoot)
			}
			return files
		},
	}
	if local {
		e.due = localDue
	}
	return st.reuseOrLoad(cs, e)
}

// compatEntry returns the entry of one compat certificate algorithm: a leaf
// the local CA issues in memory for the compat site's names.
func (st *certStore) compatEntry(cs *certSource, site *plan.Site, alg certs.Alg, now time.Time) (*certEntry, error) {
	names := site.Config.ServerNames
	e := &certEntry{
		key:  fmt.Sprintf("compat %s %q %s", alg, names, site.Signer),
		site: site.Name, kind: "compat",
		load: func(cs *certSource) (*certs.Selector, error) {
			set, err := cs.localSet()
			if err != nil {
				return nil, err
			}
			leaf, err := set.Issue(certs.LeafOptions{Names: names, Alg: alg, Validity: compatLeafValidity, Now: cs.now})
			if err == nil {
				err = certs.WrapSigner(leaf, site.Signer) // the site's ML-DSA signer; a no-op for other keys
			}
			if err != nil {
				return nil, fmt.Errorf("failed to issue the %s certificate: %w", alg, err)
			}
			return selectorFor(leaf, alg.PostQuantum()), nil
		},
		files: func() []string { return nil },
		due: func(sel *certs.Selector, now time.Time) bool {
			for _, c := range []*tls.Certificate{sel.Classical, sel.PQ} {
				if c != nil && c.Leaf != nil && now.Add(compatLeafRenewBefore).After(c.Leaf.NotAfter) {
					return true
				}
			}
			return false
		},
	}
	return st.reuseOrLoad(cs, e)
}

// reuseOrLoad returns the store's entry with e's key if its files are
// unchanged and it is not due, else loads e. st.mu held.
func (st *certStore) reuseOrLoad(cs *certSource, e *certEntry) (*certEntry, error) {
	fp := fingerprint(e.files())
	if old := st.entries[e.key]; old != nil && old.seen == fp && (old.due == nil || !old.due(old.selector(), cs.now)) {
		return old, nil
	}
	sel, err := e.load(cs)
	if err != nil {
		return nil, err
	}
	e.sel.Store(sel)
	e.seen = fp
	return e, nil
}

// commit makes b's entries the ones refresh keeps current, and publishes
// their expiry. Entries of retired generations keep serving them as they
// are.
func (st *certStore) commit(b *certBatch, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.entries = map[string]*certEntry{}
	for _, e := range b.entries {
		st.entries[e.key] = e
		if e.kind == "site" {
			st.setExpiry(e.site, e.selector(), now)
		}
	}
}

// refresh re-issues due local chains and reloads the entries whose files
// changed. New handshakes get the new chain; established connections keep
// theirs. An entry whose new files fail to load keeps serving its current
// chain, and the failure is logged once per change and counted.
func (st *certStore) refresh(cfg *config.Config, now time.Time) {
	cs := &certSource{cfg: cfg, now: now}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, e := range st.entries {
		if e.kind == "site" && e.due != nil && e.due(e.selector(), now) {
			// EnsureLocal rewrites the leaves, which changes their
			// fingerprint below; once for every local site.
			if _, err := cs.localSet(); err != nil {
				st.log.Error("failed to renew local certificates; serving the current ones", "err", err)
				st.metrics.certReloadFailures.WithLabelValues(e.site).Inc()
			}
			break
		}
	}
	for _, e := range st.entries {
		fp := fingerprint(e.files())
		dueNow := e.due != nil && e.due(e.selector(), now) && e.kind == "compat"
		if (fp == e.seen || fp == e.failed) && !dueNow {
			continue
		}
		sel, err := e.load(cs)
		if err != nil {
			e.failed = fp // log once per change, not every tick
			st.log.Error("failed to load changed certificates; serving the current ones", "site", e.site, "err", err)
			st.metrics.certReloadFailures.WithLabelValues(e.site).Inc()
			continue
		}
		e.sel.Store(sel)
		e.seen, e.failed = fp, ""
		if e.kind == "site" {
			st.setExpiry(e.site, sel, now)
		}
		st.log.Info("certificates rotated", "site", e.site, "kind", e.kind)
	}
}

func (st *certStore) setExpiry(site string, sel *certs.Selector, now time.Time) {
	if d, ok := expiryDays(sel.Classical, now); ok {
		st.metrics.certExpiryDays.WithLabelValues(site, "classical").Set(d)
	}
	if d, ok := expiryDays(sel.PQ, now); ok {
		st.metrics.certExpiryDays.WithLabelValues(site, "pq").Set(d)
	}
}

// certLoop refreshes certificates until the server stops.
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

// refreshCerts is one tick of the certificate loop.
func (s *Server) refreshCerts() {
	g := s.current.Load()
	s.certs.refresh(g.plan.Config, s.now())
	// ACME certificates renew in their Manager's own goroutine; only the
	// expiry gauge follows them here.
	s.refreshACMEExpiry(g)
	// A chain that expired (or was replaced) changes the health of the
	// anycast prefixes served with it.
	s.reportAnycast()
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

// fingerprint hashes the contents of files (a missing file counts as such),
// so a change is seen whatever happened to the size and modification time.
func fingerprint(files []string) string {
	h := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "%s: unreadable: %v\n", f, err)
			continue
		}
		fmt.Fprintf(h, "%s: %d\n", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// certSettings are the settings of a site that its chains are made from.
func certSettings(sc config.Site) any {
	return struct {
		Certs, PQCerts, PQRoot, Signer string
		Cert                           []config.CertPair
		Rules                          []config.PQRule
		Names                          []string
	}{sc.Certs, sc.PQCerts, sc.PQRoot, sc.TLS.MLDSASigner, slices.Clone(sc.Cert), slices.Clone(sc.PQRule), slices.Clone(sc.ServerNames)}
}
