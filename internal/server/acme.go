package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/certs/acme"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/fleet"
	"github.com/pqedge/pqedge/internal/plan"
)

// Sites with certs = "acme" get their classical certificate from an
// acme.Manager. Managers keep a certificate cache and renewal goroutines, so
// they are a component of the Server, not of a generation: a transaction
// reuses the Managers whose settings did not change (prepareManagers),
// makes the others, and on commit closes the ones nothing uses any more.
//
// Obtaining a certificate needs the CA's validation to reach pqedge, so the
// sockets of a config are opened and accepting before its certificates are
// obtained (obtain, the last step of prepare): TLS-ALPN-01 handshakes are
// answered on any socket whatever generation it belongs to, and HTTP-01 on
// the plain listeners opened for acme.http_port. Until the new generation is
// current, other connections on sockets it newly opened fail their
// handshake. The orders run without any server lock and end when the
// transaction is canceled (Shutdown).

// Bounds on ACME work done while building a config.
const (
	// acmeManageTimeout bounds obtaining every certificate of a config at
	// startup or reload: a CA that accepts connections and never answers,
	// or a validation that never completes, must not hang startup or a
	// reload forever. Issuance normally takes seconds.
	acmeManageTimeout = 2 * time.Minute
	// plainDrain is how long a closing HTTP-01 listener lets in-flight
	// requests finish: they are redirects and challenge answers, a few
	// hundred bytes each.
	plainDrain = time.Second
	// plainReadHeader bounds slow-header clients on the HTTP-01 listener.
	plainReadHeader = 10 * time.Second
	// plainIdle closes idle keep-alive connections on the HTTP-01
	// listener; browsers that follow the redirect never come back to it.
	plainIdle = 30 * time.Second
)

// acmeKey is everything an acme.Manager is made from. Sites whose keys are
// equal share one Manager: one account, one cache, one renewal loop. That is
// one Manager per (email, directory) in the usual config, where all ACME
// sites share the challenge settings.
type acmeKey struct {
	email, directory string
	caRoots          string // path of the ca_roots file; "" for the system roots
	caRootsPEM       string // its contents, so a changed file makes a new Manager
	dataDir          string
	httpPort         int  // 0: HTTP-01 off
	tlsALPN          bool // TLS-ALPN-01 on
	// tlsPort is the port of the site's first https listener. The CA always
	// validates on 443; certmagic binds this port for the challenge only if
	// nothing listens there, which never happens here since our sockets are
	// open first. Naming our own port keeps it from ever binding 443 behind
	// pqedge's back.
	tlsPort int
}

// acmeEntry is one open Manager.
type acmeEntry struct {
	key acmeKey
	m   *acme.Manager
	// names are the names Manage was asked for, including failed attempts
	// (a failed Manage may have left some managed); a Manager with names a
	// new config does not list is replaced rather than reused, so nothing
	// keeps renewing certificates nobody serves. Only touched by
	// transactions, which Server.txnMu serialises.
	names []string
}

// acmeState is a Server's ACME Managers across generations.
type acmeState struct {
	log    *slog.Logger
	events *prometheus.CounterVec
	// challengeTLS answers TLS-ALPN-01 validation handshakes, whatever the
	// site's policy: the CA's validator may offer no post-quantum group,
	// and the handshake carries no data (RFC 8737 section 3: the CA closes
	// the connection once it has seen the certificate).
	challengeTLS *tls.Config
	// fleet, if set, is the store every Manager keeps its state in
	// (fleet.go); set once by New before any Manager is made.
	fleet *fleet.Fleet
	// renewCheck is the Managers' RenewCheckInterval; 0 is certmagic's.
	renewCheck time.Duration

	mu      sync.Mutex // guards the fields below; never held while calling a Manager
	entries []*acmeEntry
	siteOf  map[string]string // server name -> site, for event labels
}

// acmeGen is the ACME part of one generation.
type acmeGen struct {
	state *acmeState
	sites []*acmeSite // certs = "acme" sites, in config order
	// plain maps the socket of each HTTP-01 listener to the https port
	// its redirects point to.
	plain map[*socket]int
	// created are the entries made for this generation; they are closed if
	// it never becomes current.
	created []*acmeEntry
}

// acmeSite is one certs = "acme" site of a generation.
type acmeSite struct {
	*plan.ACMESite
	entry *acmeEntry
}

// acmeALPN is the ALPN protocol of TLS-ALPN-01 (RFC 8737 section 6.2).
const acmeALPN = acme.ALPNProtocol

// manager returns the Manager of an ACME site of the generation, or nil.
func (ag *acmeGen) manager(site string) *acme.Manager {
	if ag == nil {
		return nil
	}
	for _, as := range ag.sites {
		if as.Site.Name == site {
			return as.entry.m
		}
	}
	return nil
}

func newACMEState(log *slog.Logger, reg *prometheus.Registry) *acmeState {
	st := &acmeState{
		log: log,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_acme_events_total",
			Help: "ACME certificate events by site and kind (obtained, renewed, failed). A failed renewal keeps the current certificate and is retried.",
		}, []string{"site", "kind"}),
		siteOf: map[string]string{},
	}
	st.challengeTLS = &tls.Config{
		GetCertificate: st.challengeCertificate,
		NextProtos:     []string{acme.ALPNProtocol},
		MinVersion:     tls.VersionTLS12, // RFC 8737 section 4
	}
	reg.MustRegister(st.events)
	return st
}

// servePlain serves an HTTP-01 listener until it is closed.
func (sk *socket) servePlain() {
	sk.plain.Serve(sk.ln)
	ctx, cancel := context.WithTimeout(context.Background(), plainDrain)
	defer cancel()
	if sk.plain.Shutdown(ctx) != nil {
		sk.plain.Close()
	}
}

// plainHandler answers HTTP-01 challenges and redirects every other request
// to https on the port of the current config's ACME site.
func (s *Server) plainHandler(sk *socket) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		port := 443
		if gen := s.current.Load(); gen != nil && gen.acme != nil && gen.acme.plain[sk] != 0 {
			port = gen.acme.plain[sk]
		}
		var h http.Handler = acme.RedirectToHTTPS(port)
		// Any Manager answers challenges of any other in the process
		// (certmagic keeps them process-wide); chaining them all also
		// covers tokens kept in each one's storage.
		for _, e := range s.acme.open() {
			h = e.m.HTTPChallengeHandler(h)
		}
		h.ServeHTTP(w, r)
	})
}

// prepareManagers gives each ACME site of the transaction's plan a
// Manager, reusing open ones whose key matches and whose names the new
// config still lists. It makes Managers but orders nothing.
func (t *txn) prepareManagers() error {
	st := t.s.acme
	ag := &acmeGen{state: st, plain: map[*socket]int{}}
	t.acme = ag
	keys := make([]acmeKey, len(t.plan.ACME))
	want := map[acmeKey][]string{} // every name each key's Manager will manage
	for i, ps := range t.plan.ACME {
		k, err := st.keyFor(t.plan.Config, ps, t.bound.port(ps.HTTPS))
		if err != nil {
			return fmt.Errorf("site %q: %w", ps.Site.Name, err)
		}
		keys[i] = k
		want[k] = append(want[k], ps.Site.Config.ServerNames...)
	}
	chosen := map[acmeKey]*acmeEntry{}
	for i, ps := range t.plan.ACME {
		k := keys[i]
		e := chosen[k]
		if e == nil {
			e = st.reusable(k, want[k])
		}
		if e == nil {
			var err error
			if e, err = st.newEntry(k); err != nil {
				return fmt.Errorf("site %q: %w", ps.Site.Name, err)
			}
			ag.created = append(ag.created, e)
		}
		chosen[k] = e
		ag.sites = append(ag.sites, &acmeSite{ACMESite: ps, entry: e})
		if sk := t.bound.socket(ps.Plain); sk != nil && ag.plain[sk] == 0 {
			ag.plain[sk] = t.bound.port(ps.HTTPS)
		}
	}
	st.mu.Lock()
	for _, ps := range t.plan.ACME {
		for _, n := range ps.Site.Config.ServerNames {
			st.siteOf[n] = ps.Site.Name
		}
	}
	st.mu.Unlock()
	return nil
}

// obtain orders or loads the certificates of the plan's ACME sites. It
// starts accepting on the sockets the transaction opened, so the CA's
// validation reaches pqedge, and runs Manage under acmeManageTimeout and
// the transaction's context. The error names the site, the directory and a
// hint.
func (t *txn) obtain() error {
	ag := t.acme
	if len(ag.sites) == 0 {
		return nil
	}
	for _, sk := range t.bound.opened {
		sk.start()
	}
	ctx, cancel := context.WithTimeout(t.ctx, acmeManageTimeout)
	defer cancel()
	for _, as := range ag.sites {
		names := as.Site.Config.ServerNames
		for _, n := range names {
			if !slices.Contains(as.entry.names, n) {
				as.entry.names = append(as.entry.names, n)
			}
		}
		if err := as.entry.m.Manage(ctx, names); err != nil {
			if t.ctx.Err() != nil {
				return fmt.Errorf("site %q: ACME order canceled: %w", as.Site.Name, context.Cause(t.ctx))
			}
			return fmt.Errorf("site %q: %w", as.Site.Name, err)
		}
	}
	return nil
}

func (st *acmeState) keyFor(cfg *config.Config, ps *plan.ACMESite, httpsPort int) (acmeKey, error) {
	a := ps.Site.Config.ACME
	k := acmeKey{
		email: a.Email, directory: a.Directory, caRoots: a.CARoots, dataDir: cfg.DataDir,
		httpPort: a.HTTPPort, tlsALPN: a.TLSALPNEnabled(), tlsPort: httpsPort,
	}
	if k.directory == "" {
		k.directory = acme.LetsEncryptDirectory
	}
	if a.CARoots != "" {
		// Read as text for the key (a changed file makes a new Manager);
		// certs.ReadCertificatesFile checks it in newEntry.
		data, err := os.ReadFile(a.CARoots)
		if err != nil {
			return acmeKey{}, fmt.Errorf("failed to read acme.ca_roots: %w", err)
		}
		k.caRootsPEM = string(data)
	}
	return k, nil
}

// reusable returns an open entry for k whose names are all in want.
func (st *acmeState) reusable(k acmeKey, want []string) *acmeEntry {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, e := range st.entries {
		if e.key == k && !slices.ContainsFunc(e.names, func(n string) bool { return !slices.Contains(want, n) }) {
			return e
		}
	}
	return nil
}

func (st *acmeState) newEntry(k acmeKey) (*acmeEntry, error) {
	var roots *x509.CertPool
	if k.caRoots != "" {
		parsed, err := certs.ParseCertificatesPEM([]byte(k.caRootsPEM))
		if err != nil {
			return nil, fmt.Errorf("failed to load acme.ca_roots %q: %w", k.caRoots, err)
		}
		roots = x509.NewCertPool()
		for _, c := range parsed {
			roots.AddCert(c)
		}
	}
	o := acme.Options{
		Email:              k.email,
		DirectoryURL:       k.directory,
		CARoots:            roots,
		DataDir:            k.dataDir,
		HTTPChallenge:      k.httpPort != 0,
		TLSALPNChallenge:   k.tlsALPN,
		AltHTTPPort:        k.httpPort,
		AltTLSALPNPort:     k.tlsPort,
		Logger:             st.log,
		OnEvent:            st.onEvent,
		RenewCheckInterval: st.renewCheck,
	}
	if err := st.useFleet(&o, k.dataDir); err != nil {
		return nil, err
	}
	m, err := acme.New(o)
	if err != nil {
		return nil, err
	}
	e := &acmeEntry{key: k, m: m}
	st.mu.Lock()
	st.entries = append(st.entries, e)
	st.mu.Unlock()
	return e, nil
}

// commit makes ag's Managers the only open ones, closing the rest. Called
// once ag's generation is current.
func (st *acmeState) commit(ag *acmeGen) {
	var keep []*acmeEntry
	for _, as := range ag.sites {
		if !slices.Contains(keep, as.entry) {
			keep = append(keep, as.entry)
		}
	}
	st.mu.Lock()
	var drop []*acmeEntry
	for _, e := range st.entries {
		if !slices.Contains(keep, e) {
			drop = append(drop, e)
		}
	}
	st.entries = keep
	st.mu.Unlock()
	for _, e := range drop {
		// Handshakes still in the old generation are served from the
		// closed Manager's in-memory cache.
		e.m.Close()
	}
}

// abandon closes the Managers made for a generation that will not become
// current.
func (st *acmeState) abandon(ag *acmeGen) {
	if ag == nil {
		return
	}
	st.mu.Lock()
	st.entries = slices.DeleteFunc(st.entries, func(e *acmeEntry) bool { return slices.Contains(ag.created, e) })
	st.mu.Unlock()
	for _, e := range ag.created {
		e.m.Close()
	}
	ag.created = nil
}

// closeAll closes every Manager, at shutdown.
func (st *acmeState) closeAll() {
	for _, e := range st.open() {
		e.m.Close()
	}
	st.mu.Lock()
	st.entries = nil
	st.mu.Unlock()
}

func (st *acmeState) open() []*acmeEntry {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.entries)
}

// challengeConfig returns the TLS config for a CA's TLS-ALPN-01 validation
// handshake, or nil for any other handshake or when no Manager is open.
func (ag *acmeGen) challengeConfig(info *tls.ClientHelloInfo) *tls.Config {
	if ag == nil || !acme.IsTLSALPNChallenge(info) || len(ag.state.open()) == 0 {
		return nil
	}
	return ag.state.challengeTLS
}

// challengeCertificate asks each open Manager for the challenge certificate
// of the ClientHello's name.
func (st *acmeState) challengeCertificate(info *tls.ClientHelloInfo) (*tls.Certificate, error) {
	var errs []error
	for _, e := range st.open() {
		c, err := e.m.GetCertificate(info)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, errors.New("no ACME challenge is in progress")
	}
	return nil, errors.Join(errs...)
}

// answerChallenge serves a connection on a socket the current generation
// does not use: one opened for a config whose certificates are being
// obtained, or one a reload just removed. Only a CA's TLS-ALPN-01
// validation handshake succeeds; everything else is refused.
func (st *acmeState) answerChallenge(raw net.Conn, timeout time.Duration) {
	defer raw.Close()
	if len(st.open()) == 0 {
		return
	}
	tc := tls.Server(raw, &tls.Config{
		GetConfigForClient: func(info *tls.ClientHelloInfo) (*tls.Config, error) {
			if !acme.IsTLSALPNChallenge(info) {
				return nil, errors.New("this listener is not serving yet")
			}
			return st.challengeTLS, nil
		},
	})
	// The deadline bounds validators and other clients that stall.
	raw.SetDeadline(time.Now().Add(timeout))
	tc.Handshake()
}

// onEvent counts a Manager's event by site and logs failures with what
// happens next. It runs on the goroutine doing the ACME work (a
// transaction's prepare, or a renewal), so it takes only st.mu.
func (st *acmeState) onEvent(ev acme.Event) {
	st.mu.Lock()
	site := ""
	for _, n := range ev.Names {
		if s, ok := st.siteOf[n]; ok {
			site = s
			break
		}
	}
	st.mu.Unlock()
	st.events.WithLabelValues(site, string(ev.Kind)).Inc()
	if ev.Kind == acme.EventFailed {
		next := "the site cannot start until a certificate is obtained"
		if ev.Renewal {
			next = "the current certificate keeps serving; renewal is retried with backoff"
		}
		st.log.Error("failed to get ACME certificate", "site", site, "names", ev.Names, "renewal", ev.Renewal, "err", ev.Err, "hint", next)
	}
}

// refreshACMEExpiry sets the classical expiry gauge of each ACME site to
// its earliest-expiring certificate.
func (s *Server) refreshACMEExpiry(gen *generation) {
	if gen.acme == nil {
		return
	}
	for _, as := range gen.acme.sites {
		var first time.Time
		for _, c := range as.entry.m.Expiry() {
			if !slices.ContainsFunc(c.Names, func(n string) bool {
				return slices.ContainsFunc(as.Site.Config.ServerNames, func(sn string) bool { return strings.EqualFold(sn, n) })
			}) {
				continue
			}
			if first.IsZero() || c.NotAfter.Before(first) {
				first = c.NotAfter
			}
		}
		if !first.IsZero() {
			s.metrics.certExpiryDays.WithLabelValues(as.Site.Name, "classical").Set(first.Sub(s.now()).Hours() / 24)
		}
	}
}
