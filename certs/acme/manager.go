package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
)

// LetsEncryptDirectory is the default ACME directory: Let's Encrypt
// production.
const LetsEncryptDirectory = certmagic.LetsEncryptProductionCA

// Options configures a Manager. Email, DataDir and at least one challenge
// type are required.
type Options struct {
	// Email is the ACME account contact. It is required: the CA may use it
	// for problems with the account, and without it certmagic would prompt
	// on the process's stdin.
	Email string

	// DirectoryURL is the CA's ACME directory; empty means Let's Encrypt
	// production. It must be https.
	DirectoryURL string

	// CARoots, if set, is the only trust for the ACME server's own TLS
	// certificate: for a private CA, or Pebble in tests. Nil means the
	// system roots.
	CARoots *x509.CertPool

	// DataDir is pqedge's data directory. Accounts, keys, certificates and
	// locks live in DataDir/acme (mode 0700), where certmagic's FileStorage
	// lays them out; processes sharing it coordinate through its locks.
	// Unused, and not required, with Storage.
	DataDir string

	// Storage, if set, replaces the file storage in DataDir: a fleet's
	// shared store (internal/fleet), so that one node orders each
	// certificate while the others wait for its lock and load it, any
	// node answers the CA's challenge (certmagic's distributed solver
	// keeps challenge data in storage), and a renewal happens once per
	// fleet. It must implement certmagic.TryLocker; if it implements
	// certmagic.LockLeaseRenewer, long orders renew their lock's lease.
	// The Manager never closes it.
	Storage certmagic.Storage

	// LocalCache, if set with Storage, is a node-local copy of the
	// certificates, keys and metadata certmagic loads and stores
	// (certmagic's Config.LocalCache): certificates are served from it
	// first, so a node that restarts while a shared Storage is down still
	// serves them; renewals, issuance and locks always use Storage. A
	// fleet's is internal/fleet's Fleet.LocalCache, sealed like the store.
	LocalCache certmagic.Storage

	// HTTPChallenge enables HTTP-01: the CA fetches
	// http://NAME/.well-known/acme-challenge/TOKEN on port 80.
	HTTPChallenge bool
	// TLSALPNChallenge enables TLS-ALPN-01: the CA opens a TLS connection to
	// NAME:443 offering only ALPN "acme-tls/1".
	TLSALPNChallenge bool

	// AltHTTPPort and AltTLSALPNPort are the local ports the challenges are
	// answered on when they are not 80 and 443 (a port forward in front of
	// pqedge, or tests). If nothing listens there when a challenge starts,
	// certmagic binds the port itself until the challenge ends. 0 means 80
	// and 443.
	AltHTTPPort, AltTLSALPNPort int

	// KeyType is the certificate key type; empty means KeyECDSAP256.
	KeyType KeyType

	// RenewalWindowRatio is the fraction of a certificate's lifetime, at its
	// end, in which it is renewed; 0 means certmagic's 1/3. It must be below
	// 1. The CA's ACME Renewal Information may start renewal earlier.
	RenewalWindowRatio float64

	// RenewCheckInterval is how often certificates are checked for renewal;
	// 0 means certmagic's 10 minutes. Certificates expiring within five
	// intervals are renewed at once, so keep it well below their lifetime.
	RenewCheckInterval time.Duration

	// Logger receives pqedge's and certmagic's log lines; nil means
	// slog.Default().
	Logger *slog.Logger

	// OnEvent, if set, is called once per obtained, renewed or failed
	// certificate, for metrics and alerts. It is called synchronously from
	// the goroutine doing the ACME work (the caller of Manage or RenewNow,
	// or the background renewer), so it must return quickly and must not
	// call back into the Manager. It cannot stop or undo anything.
	OnEvent func(Event)
}

// Manager obtains, renews and serves ACME certificates. Its methods are safe
// for concurrent use.
type Manager struct {
	log       *slog.Logger
	directory string
	ownRoots  bool // Options.CARoots is set: the directory is checked against it
	onEvent   func(Event)

	cache   *certmagic.Cache
	cfg     atomic.Pointer[certmagic.Config] // set once in New; read by the cache's renewer
	issuer  *certmagic.ACMEIssuer
	storage *closableStorage

	mu     sync.Mutex // guards the fields below
	names  []string   // managed names, in the order Manage got them
	closed bool
}

// New checks opts, prepares storage and starts the background renewer. It
// contacts no CA: Manage does.
func New(opts Options) (*Manager, error) {
	dir, keyType, err := checkOptions(&opts)
	if err != nil {
		return nil, err
	}
	st, err := openStorage(opts)
	if err != nil {
		return nil, err
	}

	m := &Manager{
		log:       opts.Logger,
		directory: dir,
		ownRoots:  opts.CARoots != nil,
		onEvent:   opts.OnEvent,
		storage:   &closableStorage{fs: st},
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	zl := newZapLogger(m.log.Handler())

	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			return m.cfg.Load(), nil
		},
		RenewCheckInterval: opts.RenewCheckInterval,
		Logger:             zl,
	})
	cfg := certmagic.New(m.cache, certmagic.Config{
		RenewalWindowRatio: opts.RenewalWindowRatio,
		OnEvent:            m.onCertmagicEvent,
		// Only the two events OnEvent reports: this also spares every
		// handshake the cost of building a tls_get_certificate event.
		ShouldEmitFunc: shouldEmit,
		KeySource:      certmagic.StandardKeyGenerator{KeyType: keyType},
		Storage:        m.storage,
		LocalCache:     opts.LocalCache,
		Logger:         zl,
	})
	m.issuer = certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:    dir,
		Email: opts.Email,
		// Configuring an ACME CA in pqedge is taken as agreeing to its
		// subscriber agreement; certmagic would otherwise ask on stdin.
		Agreed:                  true,
		DisableHTTPChallenge:    !opts.HTTPChallenge,
		DisableTLSALPNChallenge: !opts.TLSALPNChallenge,
		AltHTTPPort:             opts.AltHTTPPort,
		AltTLSALPNPort:          opts.AltTLSALPNPort,
		TrustedRoots:            opts.CARoots,
		Logger:                  zl,
	})
	cfg.Issuers = []certmagic.Issuer{m.issuer}
	m.cfg.Store(cfg)
	return m, nil
}

// openStorage returns Options.Storage, or the file storage in DataDir/acme.
func openStorage(opts Options) (storage, error) {
	if opts.Storage != nil {
		st, ok := opts.Storage.(storage)
		if !ok {
			return nil, fmt.Errorf("ACME storage %T does not implement certmagic.TryLocker", opts.Storage)
		}
		return st, nil
	}
	storageDir := filepath.Join(opts.DataDir, "acme")
	// Create it now so that a read-only or mistyped data_dir fails at
	// startup rather than at the first certificate.
	if err := os.MkdirAll(storageDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create ACME storage directory %q: %w", storageDir, err)
	}
	return &certmagic.FileStorage{Path: storageDir}, nil
}

// checkOptions validates opts and returns the directory URL and certmagic key
// type to use.
func checkOptions(opts *Options) (string, certmagic.KeyType, error) {
	if err := checkEmail(opts.Email); err != nil {
		return "", "", err
	}
	if opts.DataDir == "" && opts.Storage == nil {
		return "", "", errors.New("no data directory for ACME storage: set data_dir")
	}
	if opts.LocalCache != nil && opts.Storage == nil {
		return "", "", errors.New("an ACME local cache needs a shared Storage: the file storage is local already")
	}
	if !opts.HTTPChallenge && !opts.TLSALPNChallenge {
		return "", "", errors.New("no ACME challenge enabled: enable HTTP-01 (a port-80 listener) or TLS-ALPN-01 (port 443), or both")
	}
	dir := opts.DirectoryURL
	if dir == "" {
		dir = LetsEncryptDirectory
	}
	u, err := url.Parse(dir)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", "", fmt.Errorf("bad ACME directory URL %q: want an https URL such as %s", dir, LetsEncryptDirectory)
	}
	keyType, err := opts.KeyType.certmagic()
	if err != nil {
		return "", "", err
	}
	if r := opts.RenewalWindowRatio; r < 0 || r >= 1 {
		return "", "", fmt.Errorf("bad renewal window ratio %g: want a fraction of the lifetime in [0, 1), 0 for the default 1/3", r)
	}
	if opts.RenewCheckInterval < 0 {
		return "", "", fmt.Errorf("bad renewal check interval %s: want a positive duration, 0 for the default", opts.RenewCheckInterval)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"HTTP-01", opts.AltHTTPPort}, {"TLS-ALPN-01", opts.AltTLSALPNPort}} {
		if p.port < 0 || p.port > 65535 {
			return "", "", fmt.Errorf("bad %s challenge port %d: want 1-65535, or 0 for the standard port", p.name, p.port)
		}
	}
	return dir, keyType, nil
}

// checkEmail accepts a bare address ("ops@example.com"): the CA puts it in a
// mailto: URL, where display names and comments have no place.
func checkEmail(email string) error {
	if email == "" {
		return errors.New("no ACME account email: set acme.email to an address the CA can reach")
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return fmt.Errorf("bad ACME account email %q: want a plain address such as ops@example.com", email)
	}
	at := strings.LastIndexByte(email, '@')
	if !strings.Contains(email[at+1:], ".") {
		return fmt.Errorf("bad ACME account email %q: the domain has no dot", email)
	}
	return nil
}

// Manage obtains a certificate for each name, or loads it from storage, and
// puts it under background renewal. A certificate in storage that is due is
// renewed before Manage returns. Names already managed are skipped. Manage
// stops at the first failure; names before it stay managed. ctx bounds the
// ACME work of this call only.
func (m *Manager) Manage(ctx context.Context, names []string) error {
	todo, err := m.checkNames(names)
	if err != nil {
		return err
	}
	cfg := m.cfg.Load()
	for _, name := range todo {
		// One at a time, so that the names before a failure are recorded.
		if err := cfg.ManageSync(ctx, []string{name}); err != nil {
			return explain(m.directory, name, m.ownRoots, err)
		}
		m.mu.Lock()
		if !slices.Contains(m.names, name) {
			m.names = append(m.names, name)
		}
		m.mu.Unlock()
	}
	return nil
}

// checkNames normalises names and rejects those that cannot be validated
// with HTTP-01 or TLS-ALPN-01.
func (m *Manager) checkNames(names []string) ([]string, error) {
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("no server names to manage: list the site's names in server_names")
	}
	var out []string
	for _, raw := range names {
		name := strings.ToLower(strings.TrimSpace(raw))
		switch {
		case name == "":
			return nil, errors.New("empty server name in the list to manage")
		case strings.Contains(name, "*"):
			// RFC 8555 section 7.1.3: wildcard authorizations need dns-01,
			// which pqedge does not implement.
			return nil, fmt.Errorf("cannot get an ACME certificate for wildcard %q: wildcards need the DNS-01 challenge, which pqedge does not support; list the names instead", raw)
		case !certmagic.SubjectQualifiesForCert(name):
			return nil, fmt.Errorf("cannot get an ACME certificate for %q: not a valid host name", raw)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// GetCertificate serves the managed certificate for the ClientHello's server
// name, and answers TLS-ALPN-01 validation handshakes (IsTLSALPNChallenge)
// with the challenge certificate. It is a tls.Config.GetCertificate; the
// tls.Config's NextProtos must include ALPNProtocol for the challenge to
// work. A name that is not managed gets an error, which aborts the
// handshake.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.cfg.Load().GetCertificate(hello)
}

// RenewNow renews every managed certificate at once, even if not due (after
// a key compromise, or to test a deployment), and serves the new ones to new
// handshakes. A name whose renewal fails keeps its current certificate; the
// errors of all failed names are joined.
func (m *Manager) RenewNow(ctx context.Context) error {
	if err := m.checkOpen(); err != nil {
		return err
	}
	cfg := m.cfg.Load()
	var errs []error
	for _, name := range m.managedNames() {
		if err := cfg.RenewCertSync(ctx, name, true); err != nil {
			errs = append(errs, explain(m.directory, name, m.ownRoots, err))
			continue
		}
		if err := m.swapIn(ctx, cfg, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// swapIn loads the renewed certificate for name from storage into the cache
// and then drops the ones it replaces, so that a handshake always finds one.
func (m *Manager) swapIn(ctx context.Context, cfg *certmagic.Config, name string) error {
	old := m.cache.AllMatchingCertificates(name)
	fresh, err := cfg.CacheManagedCertificate(ctx, name)
	if err != nil {
		return fmt.Errorf("failed to load renewed certificate for %q from storage: %w", name, err)
	}
	var drop []string
	for _, c := range old {
		if c.Hash() != fresh.Hash() && slices.Contains(c.Names, name) {
			drop = append(drop, c.Hash())
		}
	}
	m.cache.Remove(drop)
	return nil
}

// CertExpiry describes a certificate being served.
type CertExpiry struct {
	Names    []string
	NotAfter time.Time
	Serial   string // hexadecimal
	KeyType  string // "ecdsa-p256", "rsa2048", ...
}

// Expiry reports every certificate being served for the managed names, in
// the order the names were managed. A name whose certificate is missing from
// the cache (possible only briefly, during a reload) is left out.
func (m *Manager) Expiry() []CertExpiry {
	var out []CertExpiry
	seen := map[string]bool{}
	for _, name := range m.managedNames() {
		for _, c := range m.cache.AllMatchingCertificates(name) {
			if seen[c.Hash()] || c.Leaf == nil || !slices.Contains(c.Names, name) {
				continue
			}
			seen[c.Hash()] = true
			kt, err := describePublicKey(c.Leaf.PublicKey)
			if err != nil {
				kt = "unknown"
			}
			out = append(out, CertExpiry{
				Names:    slices.Clone(c.Names),
				NotAfter: c.Leaf.NotAfter,
				Serial:   c.Leaf.SerialNumber.Text(16),
				KeyType:  kt,
			})
		}
	}
	return out
}

func (m *Manager) checkOpen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errStorageClosed
	}
	return nil
}

func (m *Manager) managedNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.names)
}

// Close stops background renewal and waits for storage operations in
// progress; after it returns, nothing this Manager started writes to
// storage. Certificates already in memory can still be served; Manage and
// RenewNow fail after Close. Close is idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	m.cache.Stop()
	m.storage.close()
}
