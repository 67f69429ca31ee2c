package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/acmetest"
)

// manageTimeout bounds one ACME issuance against the in-process Pebble.
const manageTimeout = 60 * time.Second

func manage(t *testing.T, m *Manager, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), manageTimeout)
	defer cancel()
	if err := m.Manage(ctx, names); err != nil {
		t.Fatalf("Manage(%v): %v", names, err)
	}
}

func checkP256(t *testing.T, leaf *x509.Certificate) {
	t.Helper()
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("served leaf key is %T, want ECDSA P-256", leaf.PublicKey)
	}
}

func TestIssueAndServe(t *testing.T) {
	tests := []struct {
		name      string
		http      bool
		alpn      bool
		host      string
		wantHTTP  bool // HTTP-01 answered by the site's port-80 handler
		wantALPN  bool // TLS-ALPN-01 answered by the site's https listener
		moreHosts []string
	}{
		{name: "http-01", http: true, host: "http01.pqedge.test", wantHTTP: true},
		{name: "tls-alpn-01", alpn: true, host: "alpn01.pqedge.test", wantALPN: true},
		{name: "two names over tls-alpn-01", alpn: true, host: "a.pqedge.test", moreHosts: []string{"B.pqedge.test"}, wantALPN: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			site := newTestSite(t)
			ca := startPebble(t, pebbleConfig{httpPort: site.httpPort(), tlsPort: site.tlsPort()})
			m, events := newTestManager(t, ca, site, func(o *Options) {
				o.HTTPChallenge, o.TLSALPNChallenge = tt.http, tt.alpn
			})
			site.serve(t, m)

			hosts := append([]string{tt.host}, tt.moreHosts...)
			manage(t, m, hosts...)

			for _, host := range hosts {
				want := strings.ToLower(host)
				leaf := site.handshake(t, ca, want)
				if !slices.Equal(leaf.DNSNames, []string{want}) {
					t.Errorf("leaf names = %v, want [%s]", leaf.DNSNames, want)
				}
				checkP256(t, leaf)
			}
			if _, err := site.tryHandshake(ca, "unmanaged.pqedge.test"); err == nil {
				t.Error("handshake for a name that is not managed succeeded")
			}
			if got := site.httpHits.Load() > 0; got != tt.wantHTTP {
				t.Errorf("HTTP-01 answered by our handler: %v, want %v", got, tt.wantHTTP)
			}
			if got := site.alpnHits.Load() > 0; got != tt.wantALPN {
				t.Errorf("TLS-ALPN-01 answered by our listener: %v, want %v", got, tt.wantALPN)
			}
			if got := events.count(EventObtained); got != len(hosts) {
				t.Errorf("obtained events = %d, want %d (%v)", got, len(hosts), events.all())
			}

			exp := m.Expiry()
			if len(exp) != len(hosts) {
				t.Fatalf("Expiry() = %v, want %d entries", exp, len(hosts))
			}
			leaf := site.handshake(t, ca, strings.ToLower(tt.host))
			if e := exp[0]; !e.NotAfter.Equal(leaf.NotAfter) || e.Serial != leaf.SerialNumber.Text(16) || e.KeyType != string(KeyECDSAP256) {
				t.Errorf("Expiry()[0] = %+v, want NotAfter %v serial %x key %s", e, leaf.NotAfter, leaf.SerialNumber, KeyECDSAP256)
			}
		})
	}
}

// A second Manager on the same data directory loads the certificate from
// storage instead of asking the CA again.
func TestManageLoadsFromStorage(t *testing.T) {
	site := newTestSite(t)
	ca := startPebble(t, pebbleConfig{httpPort: site.httpPort(), tlsPort: site.tlsPort()})
	dataDir := t.TempDir()
	first, events1 := newTestManager(t, ca, site, func(o *Options) { o.DataDir = dataDir })
	site.serve(t, first)
	manage(t, first, "stored.pqedge.test")
	want := first.Expiry()[0].Serial
	first.Close()

	second, events2 := newTestManager(t, ca, site, func(o *Options) { o.DataDir = dataDir })
	manage(t, second, "stored.pqedge.test")
	if got := second.Expiry(); len(got) != 1 || got[0].Serial != want {
		t.Errorf("second manager serves %+v, want serial %s from storage", got, want)
	}
	if events1.count(EventObtained) != 1 || len(events2.all()) != 0 {
		t.Errorf("events: first %v, second %v; want one obtained, then none", events1.all(), events2.all())
	}
}

// RenewNow replaces the served certificate without a restart.
func TestRenewNowRotates(t *testing.T) {
	site := newTestSite(t)
	ca := startPebble(t, pebbleConfig{httpPort: site.httpPort(), tlsPort: site.tlsPort()})
	m, events := newTestManager(t, ca, site, nil)
	site.serve(t, m)
	const host = "rotate.pqedge.test"
	manage(t, m, host)
	before := site.handshake(t, ca, host)
	acmetest.SkipIfUnrenewable(t, before)

	ctx, cancel := context.WithTimeout(context.Background(), manageTimeout)
	defer cancel()
	if err := m.RenewNow(ctx); err != nil {
		t.Fatalf("RenewNow: %v", err)
	}
	after := site.handshake(t, ca, host)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatalf("serial unchanged after RenewNow: %x", after.SerialNumber)
	}
	checkP256(t, after)
	if got := events.count(EventRenewed); got != 1 {
		t.Errorf("renewed events = %d, want 1 (%v)", got, events.all())
	}
	if exp := m.Expiry(); len(exp) != 1 || exp[0].Serial != after.SerialNumber.Text(16) {
		t.Errorf("Expiry() = %+v, want only the new serial %x", exp, after.SerialNumber)
	}
}

// The background renewer renews a certificate inside its renewal window and
// new handshakes get the new one. Pebble issues 30-second certificates and
// the window is the last 90% of the lifetime, so renewal is due about three
// seconds after issuance.
func TestBackgroundRenewal(t *testing.T) {
	site := newTestSite(t)
	ca := startPebble(t, pebbleConfig{httpPort: site.httpPort(), tlsPort: site.tlsPort(), validity: 30})
	m, events := newTestManager(t, ca, site, func(o *Options) {
		o.RenewalWindowRatio = 0.9
		o.RenewCheckInterval = 200 * time.Millisecond
	})
	site.serve(t, m)
	const host = "background.pqedge.test"
	manage(t, m, host)
	before := site.handshake(t, ca, host)
	acmetest.SkipIfUnrenewable(t, before)

	waitFor(t, "a renewed certificate in handshakes", manageTimeout, func() bool {
		leaf, err := site.tryHandshake(ca, host)
		return err == nil && leaf.SerialNumber.Cmp(before.SerialNumber) != 0
	})
	if events.count(EventRenewed) == 0 {
		t.Errorf("no renewed event: %v", events.all())
	}
}

// A renewal that fails keeps the current certificate in service and is
// reported.
func TestFailedRenewalKeepsServing(t *testing.T) {
	site := newTestSite(t)
	ca := startPebble(t, pebbleConfig{httpPort: site.httpPort(), tlsPort: site.tlsPort()})
	m, events := newTestManager(t, ca, site, nil)
	site.serve(t, m)
	const host = "keep.pqedge.test"
	manage(t, m, host)
	before := site.handshake(t, ca, host)

	ca.pebble.Close() // the CA goes away
	ctx, cancel := context.WithTimeout(context.Background(), manageTimeout)
	defer cancel()
	err := m.RenewNow(ctx)
	var acmeErr *Error
	if !errors.As(err, &acmeErr) || acmeErr.Name != host || !strings.Contains(err.Error(), ca.dirURL) {
		t.Fatalf("RenewNow error = %v, want an *Error for %s naming %s", err, host, ca.dirURL)
	}
	after := site.handshake(t, ca, host)
	if after.SerialNumber.Cmp(before.SerialNumber) != 0 {
		t.Errorf("serial changed from %x to %x after a failed renewal", before.SerialNumber, after.SerialNumber)
	}
	var failed []Event
	for _, ev := range events.all() {
		if ev.Kind == EventFailed {
			failed = append(failed, ev)
		}
	}
	if len(failed) != 1 || !failed[0].Renewal || failed[0].Err == nil || !slices.Equal(failed[0].Names, []string{host}) {
		t.Errorf("failed events = %+v, want one renewal failure for %s with an error", failed, host)
	}
}

// An ACME directory on a closed loopback port fails Manage at once (a few
// bounded retries inside the ACME client, none across attempts) with an error
// that names the URL and says what to check.
func TestUnreachableDirectory(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dirURL := "https://" + ln.Addr().String() + "/dir"
	ln.Close()

	site := newTestSite(t)
	m, events := newTestManager(t, &testCA{dirURL: dirURL}, site, nil)
	ctx, cancel := context.WithTimeout(context.Background(), manageTimeout)
	defer cancel()
	start := time.Now()
	err = m.Manage(ctx, []string{"unreachable.pqedge.test"})
	t.Logf("Manage against a closed port failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("Manage succeeded against a closed port")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Manage ran into its %s deadline instead of failing: %v", manageTimeout, err)
	}
	var acmeErr *Error
	if !errors.As(err, &acmeErr) || !strings.Contains(err.Error(), dirURL) || !strings.Contains(acmeErr.Hint, "cannot reach the ACME directory") {
		t.Errorf("error = %v, want an *Error naming %s with a reachability hint", err, dirURL)
	}
	if got := events.count(EventFailed); got != 1 {
		t.Errorf("failed events = %d, want 1", got)
	}
	if len(m.Expiry()) != 0 {
		t.Errorf("Expiry() = %v after a failed Manage, want none", m.Expiry())
	}
}

// An ACME server whose TLS certificate is not trusted gets a hint about
// the CA roots, not about reachability: without acme.ca_roots, about the
// system's roots.
func TestUntrustedDirectory(t *testing.T) {
	site := newTestSite(t)
	ca := startPebble(t, pebbleConfig{httpPort: site.httpPort(), tlsPort: site.tlsPort()})
	m, _ := newTestManager(t, ca, site, func(o *Options) { o.CARoots = nil })
	ctx, cancel := context.WithTimeout(context.Background(), manageTimeout)
	defer cancel()
	err := m.Manage(ctx, []string{"untrusted.pqedge.test"})
	var acmeErr *Error
	if !errors.As(err, &acmeErr) || !strings.Contains(acmeErr.Hint, "not trusted by the system's CA roots") {
		t.Errorf("error = %v, want an *Error with a CA-roots hint", err)
	}
}

func TestManageRejectsNames(t *testing.T) {
	site := newTestSite(t)
	// No CA: every case must fail before any network traffic.
	m, events := newTestManager(t, &testCA{dirURL: "https://127.0.0.1:1/dir"}, site, nil)
	tests := []struct {
		name  string
		names []string
		want  string
	}{
		{name: "nil list", names: nil, want: "no server names"},
		{name: "empty list", names: []string{}, want: "no server names"},
		{name: "empty name", names: []string{"ok.pqedge.test", " "}, want: "empty server name"},
		{name: "wildcard", names: []string{"*.pqedge.test"}, want: "DNS-01"},
		{name: "bad characters", names: []string{"bad name!.test"}, want: "not a valid host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Manage(context.Background(), tt.names)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Manage(%q) = %v, want an error containing %q", tt.names, err, tt.want)
			}
		})
	}
	if len(events.all()) != 0 {
		t.Errorf("events for rejected names: %v", events.all())
	}
}

func TestManageAfterClose(t *testing.T) {
	site := newTestSite(t)
	m, _ := newTestManager(t, &testCA{dirURL: "https://127.0.0.1:1/dir"}, site, nil)
	m.Close()
	m.Close() // idempotent
	if err := m.Manage(context.Background(), []string{"late.pqedge.test"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Manage after Close = %v, want a closed error", err)
	}
	if err := m.RenewNow(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("RenewNow after Close = %v, want a closed error", err)
	}
}

func TestNewRejectsOptions(t *testing.T) {
	valid := func() Options {
		return Options{Email: "ops@pqedge.test", DataDir: t.TempDir(), HTTPChallenge: true}
	}
	tests := []struct {
		name  string
		tweak func(*Options)
		want  string
	}{
		{name: "no email", tweak: func(o *Options) { o.Email = "" }, want: "no ACME account email"},
		{name: "not an address", tweak: func(o *Options) { o.Email = "ops" }, want: "bad ACME account email"},
		{name: "display name", tweak: func(o *Options) { o.Email = "Ops <ops@pqedge.test>" }, want: "plain address"},
		{name: "dotless domain", tweak: func(o *Options) { o.Email = "ops@example" }, want: "no dot"},
		{name: "no data dir", tweak: func(o *Options) { o.DataDir = "" }, want: "data_dir"},
		{name: "no challenge", tweak: func(o *Options) { o.HTTPChallenge = false }, want: "no ACME challenge"},
		{name: "http directory", tweak: func(o *Options) { o.DirectoryURL = "http://acme.example/dir" }, want: "https URL"},
		{name: "no host", tweak: func(o *Options) { o.DirectoryURL = "https:///dir" }, want: "https URL"},
		{name: "ML-DSA key", tweak: func(o *Options) { o.KeyType = "mldsa65" }, want: "cannot be used with ACME"},
		{name: "ratio 1", tweak: func(o *Options) { o.RenewalWindowRatio = 1 }, want: "renewal window ratio"},
		{name: "negative interval", tweak: func(o *Options) { o.RenewCheckInterval = -time.Second }, want: "renewal check interval"},
		{name: "port too big", tweak: func(o *Options) { o.AltTLSALPNPort = 70000 }, want: "TLS-ALPN-01 challenge port"},
		{name: "data dir is a file", tweak: func(o *Options) { o.DataDir = "/dev/null" }, want: "failed to create ACME storage directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := valid()
			tt.tweak(&opts)
			m, err := New(opts)
			if err == nil {
				m.Close()
				t.Fatalf("New accepted %+v", opts)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		m, err := New(valid())
		if err != nil {
			t.Fatalf("New(valid) = %v", err)
		}
		m.Close()
	})
}
