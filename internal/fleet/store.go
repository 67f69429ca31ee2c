package fleet

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"
)

// Store connection limits. Each protects a node from a store that is slow
// or gone: no call may hold a refresh goroutine or an ACME job longer.
const (
	// dialTimeout bounds connecting (and the TLS handshake for rediss).
	dialTimeout = 2 * time.Second
	// ioTimeout bounds each read and write on a store connection.
	ioTimeout = 2 * time.Second
	// poolSize: a node makes few, short calls (ticket refresh, ACME jobs,
	// lock keepalives); a small pool keeps a fleet's connection count low.
	poolSize = 4
)

// StoreURL is a parsed, checked store address.
type StoreURL struct {
	Scheme   string // redis, rediss or unix
	Addr     string // host:port, or the socket path
	DB       int
	Username string // an ACL user name, or empty for "default"
}

// String is the URL without credentials, for logs and status pages.
func (u StoreURL) String() string {
	user := ""
	if u.Username != "" {
		user = url.PathEscape(u.Username) + "@"
	}
	if u.Scheme == "unix" {
		// url.URL escapes what a path may hold and a URL may not
		// ("%", "?", "#", spaces).
		v := &url.URL{Scheme: "unix", Path: u.Addr}
		if u.Username != "" {
			v.User = url.User(u.Username)
		}
		if u.DB != 0 {
			v.RawQuery = "db=" + strconv.Itoa(u.DB)
		}
		return v.String()
	}
	return fmt.Sprintf("%s://%s%s/%d", u.Scheme, user, u.Addr, u.DB)
}

// ParseStoreURL checks a store address:
//
//	redis://HOST:PORT/DB       plain TCP (loopback or a trusted network)
//	rediss://HOST:PORT/DB      TLS
//	unix:///PATH?db=DB         a unix socket
//
// The port defaults to 6379 and DB to 0. A user name may be given
// (redis://pqedge@HOST:PORT/0, a Redis 6+ ACL user); a password may not:
// secrets stay out of config files, in password_file or password_env.
// Query parameters other than unix's db are refused: pqedge sets its own
// timeouts.
func ParseStoreURL(s string) (StoreURL, error) {
	if !strings.Contains(s, "://") {
		// Not quoted: a URL without scheme may still carry user:password.
		return StoreURL{}, errors.New("the store URL has no scheme: unknown scheme (use redis://HOST:PORT/DB, rediss:// or unix:///PATH)")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the whole URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return StoreURL{}, fmt.Errorf("bad store URL: %v", err)
	}
	if _, set := u.User.Password(); set {
		return StoreURL{}, errors.New("the store URL holds a password: pqedge reads it from password_file or password_env, never from the config")
	}
	out := StoreURL{Scheme: u.Scheme, Username: u.User.Username()}
	q := u.Query()
	switch u.Scheme {
	case "redis", "rediss":
		if u.Opaque != "" || u.Host == "" {
			return StoreURL{}, fmt.Errorf("store URL %q has no host: write %s://HOST:PORT/DB", s, u.Scheme)
		}
		host, port := u.Hostname(), u.Port()
		if host == "" || strings.Contains(host, ":") && !isIPv6(host) {
			return StoreURL{}, fmt.Errorf("store URL %q has a bad host %q: write a name, an IPv4 address or [IPv6]", s, host)
		}
		if port == "" {
			port = "6379"
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return StoreURL{}, fmt.Errorf("store URL %q has a bad port %q", s, port)
		}
		out.Addr = net.JoinHostPort(host, port)
		db := strings.Trim(u.Path, "/")
		if db != "" {
			if out.DB, err = parseDB(db); err != nil {
				return StoreURL{}, fmt.Errorf("store URL %q: %v", s, err)
			}
		}
		if len(q) > 0 {
			return StoreURL{}, fmt.Errorf("store URL %q has query parameters: only unix:// URLs take one (db)", s)
		}
	case "unix":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return StoreURL{}, fmt.Errorf("store URL %q: a unix socket URL is unix:///ABSOLUTE/PATH (three slashes)", s)
		}
		if i := strings.IndexFunc(u.Path, unicode.IsControl); i >= 0 {
			return StoreURL{}, fmt.Errorf("store URL %q: the socket path holds a control character (%q)", s, u.Path[i])
		}
		out.Addr = u.Path
		for name, vals := range q {
			if name != "db" || len(vals) != 1 {
				return StoreURL{}, fmt.Errorf("store URL %q: unknown query parameter %q (only db)", s, name)
			}
			if out.DB, err = parseDB(vals[0]); err != nil {
				return StoreURL{}, fmt.Errorf("store URL %q: %v", s, err)
			}
		}
	default:
		return StoreURL{}, fmt.Errorf("store URL %q: unknown scheme %q (use redis://, rediss:// or unix://)", s, u.Scheme)
	}
	return out, nil
}

func parseDB(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1<<16 {
		return 0, fmt.Errorf("bad database number %q", s)
	}
	return n, nil
}

// ReadPassword returns the store password from a file (its first line) or
// an environment variable; at most one of file and env may be set, and
// neither means no password. key names the TOML table in errors.
func ReadPassword(file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", errors.New("both fleet.password_file and fleet.password_env are set: keep one")
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("failed to read fleet.password_file: %w", err)
		}
		pw, _, _ := strings.Cut(string(data), "\n")
		pw = strings.TrimRight(pw, "\r")
		if pw == "" {
			return "", fmt.Errorf("fleet.password_file %q is empty", file)
		}
		return pw, nil
	case env != "":
		pw, ok := os.LookupEnv(env)
		if !ok || pw == "" {
			return "", fmt.Errorf("fleet.password_env names %s, which is not set in pqedge's environment", env)
		}
		return pw, nil
	}
	return "", nil
}

// LoadCARoots reads a PEM file of roots trusted for a rediss:// store's
// certificate.
func LoadCARoots(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("failed to read fleet.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("fleet.ca_file %q holds no PEM certificate", file)
	}
	return pool, nil
}

// newClient makes a go-redis client for u. It connects lazily: no I/O
// happens here.
func newClient(u StoreURL, password string, roots *x509.CertPool) *redis.Client {
	opts := &redis.Options{
		Network:      "tcp",
		Addr:         u.Addr,
		DB:           u.DB,
		Username:     u.Username,
		Password:     password,
		DialTimeout:  dialTimeout,
		ReadTimeout:  ioTimeout,
		WriteTimeout: ioTimeout,
		// A caller's ctx deadline (the Keeper's refresh, certmagic's
		// job) also bounds each call.
		ContextTimeoutEnabled: true,
		PoolSize:              poolSize,
		PoolTimeout:           ioTimeout,
		// One quick retry covers a connection the server closed while
		// idle; more would only stretch an outage into every caller.
		MaxRetries: 1,
		// Fail a call at the first refused dial: every caller retries on
		// its own schedule, and a store that is down should cost each
		// call one round trip, not go-redis's five with backoff. After
		// PoolSize refused dials go-redis fails calls at once and probes
		// the server every second in the background.
		DialerRetries: 1,
		// CLIENT SETINFO is unknown to Redis before 7.2 and to some
		// proxies; pqedge does not need it.
		DisableIdentity: true,
	}
	switch u.Scheme {
	case "unix":
		opts.Network = "unix"
	case "rediss":
		host, _, _ := net.SplitHostPort(u.Addr)
		opts.TLSConfig = &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return redis.NewClient(opts)
}

// isIPv6 says whether host, a URL's host without brackets, is an IPv6
// address without a zone; anything else with a colon in it is no host at
// all (url.Parse lets "redis://::" through with host ":"). Zones are
// refused: a link-local store is no fleet's, and the zone would not
// survive StoreURL.String.
func isIPv6(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is6() && a.Zone() == ""
}
