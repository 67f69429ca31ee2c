package fleet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of the [fleet] knobs.
const (
	// DefaultKeyPrefix starts every key a fleet writes; fleets sharing one
	// server need distinct prefixes.
	DefaultKeyPrefix = "pqedge:"
	// DefaultTicketRotation is how long one ticket key seals new tickets.
	// Go rotates its own keys every 24 h; half that bounds what one leaked
	// key exposes to half a day of new sessions.
	DefaultTicketRotation = 12 * time.Hour
	// DefaultTicketLifetime is how long a ticket may resume: Go's TLS 1.3
	// server caps ticket lifetime at 7 days (RFC 8446 section 4.6.1).
	DefaultTicketLifetime = 7 * 24 * time.Hour
	// DefaultLockTTL is a lock's lease: a node that dies holding a lock
	// frees it after this long. A live holder renews it every third of it.
	DefaultLockTTL = time.Minute
)

// Settings is the [fleet] table as written: addresses and file names.
// Options reads the files it names.
type Settings struct {
	Store             string // redis://, rediss:// or unix:// URL
	PasswordFile      string
	PasswordEnv       string
	CAFile            string // rediss:// only
	KeyPrefix         string
	EncryptionKeyFile string
	NodeID            string
	TicketRotation    time.Duration
	// DataDir is pqedge's data_dir; the ticket-key cache lives in
	// DataDir/fleet.
	DataDir string
}

// Options reads the key file, the password and the CA file s names, and
// fills in defaults. Its errors name the TOML key to fix.
func (s Settings) Options() (Options, error) {
	u, err := ParseStoreURL(s.Store)
	if err != nil {
		return Options{}, fmt.Errorf("fleet.store: %w", err)
	}
	o := Options{Store: u, KeyPrefix: s.KeyPrefix, NodeID: s.NodeID, TicketRotation: s.TicketRotation}
	if s.EncryptionKeyFile == "" {
		return Options{}, errors.New("fleet.encryption_key_file is not set: make a key with `pqedge fleet keygen -o FILE` and give every node the same file")
	}
	if o.Key, err = LoadKeyFile(s.EncryptionKeyFile); err != nil {
		return Options{}, fmt.Errorf("fleet.encryption_key_file: %w", err)
	}
	if o.Password, err = ReadPassword(s.PasswordFile, s.PasswordEnv); err != nil {
		return Options{}, err
	}
	if s.CAFile != "" {
		if o.CARoots, err = LoadCARoots(s.CAFile); err != nil {
			return Options{}, err
		}
	}
	if s.DataDir != "" {
		o.CacheDir = filepath.Join(s.DataDir, "fleet")
	}
	return o, nil
}

// Options configures a Fleet. Store and Key are required.
type Options struct {
	Store    StoreURL
	Password string         // empty: no AUTH
	CARoots  *x509.CertPool // rediss:// trust; nil: the system roots
	Key      *Key           // seals every value written

	// KeyPrefix starts every key written; empty means DefaultKeyPrefix.
	KeyPrefix string
	// NodeID names this node in locks and in who rotated a ticket key;
	// empty means the host name.
	NodeID string

	// TicketRotation is how long each ticket key seals; 0 means
	// DefaultTicketRotation. TicketLifetime is how long a ticket resumes
	// after it was issued; 0 means DefaultTicketLifetime.
	TicketRotation, TicketLifetime time.Duration

	// LockTTL is a lock's lease; 0 means DefaultLockTTL.
	LockTTL time.Duration

	// CacheDir keeps the last sealed ticket-key state (mode 0700, file
	// 0600), for a node that starts while the store is down; empty: no
	// cache.
	CacheDir string

	// Logger receives outage and rotation messages; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Fleet is a node's connection to its fleet's shared store: the
// certmagic storage for ACME (Storage), the ticket-key source (Tickets)
// and the state a status page and metrics show (Status). It is a
// server-owned component that outlives config generations; a reload that
// changes [fleet] replaces it. Its methods are safe for concurrent use.
type Fleet struct {
	opts    Options
	log     *slog.Logger
	client  *redis.Client
	keys    keyspace
	storage *Storage
	tickets *TicketSource

	mu        sync.Mutex // guards the fields below
	reachable bool       // the last store call succeeded
	lastOK    time.Time  // when a store call last succeeded
	lastErr   error      // the last failed store call's error
	failures  uint64     // failed store calls since New
}

// New checks opts and makes the Fleet. It does no network I/O: the store
// is contacted by the first call that needs it, so a node starts (and
// serves from its cache) while the store is down.
func New(opts Options) (*Fleet, error) {
	if opts.Key == nil {
		return nil, errors.New("no fleet encryption key: set fleet.encryption_key_file")
	}
	if opts.Store.Addr == "" {
		return nil, errors.New("no fleet store: set fleet.store")
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if err := CheckKeyPrefix(opts.KeyPrefix); err != nil {
		return nil, err
	}
	if opts.NodeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, errors.New("no fleet.node_id and no host name to default to: set fleet.node_id")
		}
		opts.NodeID = h
	}
	if err := CheckNodeID(opts.NodeID); err != nil {
		return nil, err
	}
	if opts.TicketRotation == 0 {
		opts.TicketRotation = DefaultTicketRotation
	}
	if opts.TicketLifetime == 0 {
		opts.TicketLifetime = DefaultTicketLifetime
	}
	if opts.LockTTL == 0 {
		opts.LockTTL = DefaultLockTTL
	}
	if opts.TicketRotation < 0 || opts.TicketLifetime < 0 || opts.LockTTL < 0 {
		return nil, errors.New("fleet durations must be positive")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Fleet{
		opts:   opts,
		log:    opts.Logger.With("fleet_store", opts.Store.String(), "node", opts.NodeID),
		client: newClient(opts.Store, opts.Password, opts.CARoots),
		keys:   keyspace{prefix: opts.KeyPrefix},
	}
	f.storage = newStorage(f)
	f.tickets = newTicketSource(f)
	return f, nil
}

// CheckKeyPrefix accepts printable ASCII without spaces, at most 64 bytes:
// it shows up in every key, in ACL patterns (~PREFIX*) and in redis-cli.
func CheckKeyPrefix(p string) error {
	if len(p) > 64 {
		return fmt.Errorf("key prefix %q is longer than 64 bytes", p)
	}
	for _, r := range p {
		if r <= ' ' || r > '~' || r == '*' || r == '?' || r == '[' || r == ']' || r == '\\' {
			return fmt.Errorf("key prefix %q has %q: use letters, digits and punctuation such as : / - _ (no glob characters)", p, r)
		}
	}
	return nil
}

// CheckNodeID accepts what a host name may hold, and _ and :, up to 64
// bytes.
func CheckNodeID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("node id %q must be 1 to 64 bytes", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._:", r)) {
			return fmt.Errorf("node id %q has %q: use letters, digits, - . _ and :", id, r)
		}
	}
	return nil
}

// Storage is the fleet's certmagic storage, for certs/acme.Options.Storage.
func (f *Fleet) Storage() *Storage { return f.storage }

// Tickets is the fleet's session-ticket key source, for the Keeper.
func (f *Fleet) Tickets() *TicketSource { return f.tickets }

// NodeID is the node's name in the fleet.
func (f *Fleet) NodeID() string { return f.opts.NodeID }

// Ping checks the store answers, for a readiness probe or a CLI check.
func (f *Fleet) Ping(ctx context.Context) error {
	err := f.observe(f.client.Ping(ctx).Err())
	if err != nil {
		return fmt.Errorf("failed to reach fleet store %s: %w", f.opts.Store, err)
	}
	return nil
}

// Close stops lock keepalives, releases the locks this node holds (best
// effort, briefly) and closes the store connections. Storage and ticket
// calls fail after it.
func (f *Fleet) Close() error {
	f.storage.close()
	return f.client.Close()
}

// observe records the outcome of a store call for Status and returns err.
// A missing key (redis.Nil) and a lost WATCH race are answers, not
// outages; a caller giving up (context.Canceled) says nothing about the
// store.
func (f *Fleet) observe(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) {
		if !f.reachable && f.failures > 0 {
			f.log.Info("fleet store reachable again")
		}
		f.reachable, f.lastOK = true, time.Now()
		return err
	}
	if f.reachable || f.failures == 0 {
		f.log.Warn("fleet store unreachable; serving with the keys and certificates this node has", "err", err)
	}
	f.reachable, f.lastErr = false, err
	f.failures++
	return err
}

// Status is a snapshot of a node's view of its fleet, for metrics and the
// admin page.
type Status struct {
	Store  string // the store URL without credentials
	NodeID string
	// KeyFingerprint names the encryption key; nodes that show different
	// ones cannot read each other's values.
	KeyFingerprint string

	Reachable   bool      // the last store call succeeded
	LastContact time.Time // when a store call last succeeded; zero: never
	LastError   string    // the last failed call's error, if any
	Failures    uint64    // failed store calls since start

	Tickets TicketStatus
	Locks   LockStatus
}

// Status returns the node's fleet state now.
func (f *Fleet) Status() Status {
	f.mu.Lock()
	s := Status{
		Store:          f.opts.Store.String(),
		NodeID:         f.opts.NodeID,
		KeyFingerprint: f.opts.Key.Fingerprint(),
		Reachable:      f.reachable,
		LastContact:    f.lastOK,
		Failures:       f.failures,
	}
	if f.lastErr != nil {
		s.LastError = f.lastErr.Error()
	}
	f.mu.Unlock()
	s.Tickets = f.tickets.status()
	s.Locks = f.storage.lockStatus()
	return s
}

// keyspace names the keys a fleet uses under its prefix. The associated
// data a value is sealed with is its key without the prefix, so a fleet
// can be moved to another prefix by renaming its keys.
type keyspace struct{ prefix string }

func (k keyspace) acmeValue(key string) string { return k.prefix + acmeAD(key) }
func (k keyspace) acmeIndex() string           { return k.prefix + "acme-index" }
func (k keyspace) acmeModified() string        { return k.prefix + "acme-modified" }
func (k keyspace) acmeValuePrefix() string     { return k.prefix + "acme:" }
func (k keyspace) lock(name string) string     { return k.prefix + "lock:" + name }
func (k keyspace) tickets() string             { return k.prefix + ticketsAD }

// acmeAD is the associated data of a certmagic value.
func acmeAD(key string) string { return "acme:" + key }

// ticketsAD is the associated data (and key, under the prefix) of the
// ticket-key state.
const ticketsAD = "tickets"
