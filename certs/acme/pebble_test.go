package acme

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/acmetest"
)

// testCA is the in-process Pebble of package acmetest, as these tests name
// its parts. Its validation authority resolves every name to 127.0.0.1 and
// validates against the test site's real listeners. Tests that need no CA
// fill in only dirURL.
type testCA struct {
	dirURL      string         // ACME directory
	apiRoots    *x509.CertPool // trust for the ACME API's own TLS certificate
	issuerRoots *x509.CertPool // Pebble's root: trust for issued certificates
	pebble      *acmetest.CA
}

type pebbleConfig struct {
	httpPort, tlsPort int    // where the VA sends HTTP-01 and TLS-ALPN-01
	validity          uint64 // certificate lifetime in seconds; 0: Pebble's 90 days
}

func startPebble(t *testing.T, pc pebbleConfig) *testCA {
	t.Helper()
	c := acmetest.Start(t, acmetest.Options{
		HTTPPort: pc.httpPort,
		TLSPort:  pc.tlsPort,
		Validity: time.Duration(pc.validity) * time.Second,
	})
	return &testCA{dirURL: c.DirectoryURL, apiRoots: c.APIRoots, issuerRoots: c.IssuerRoots, pebble: c}
}

// testSite is the pqedge side: a plain-HTTP listener with the HTTP-01 handler
// and an https listener using Manager.GetCertificate, as the server wiring
// is documented to do. It counts the challenges it answered, so tests can
// tell that validation went through these listeners and not through a
// listener certmagic opened itself.
type testSite struct {
	httpLn, tlsLn net.Listener
	httpHits      atomic.Int32 // HTTP-01 requests answered
	alpnHits      atomic.Int32 // TLS-ALPN-01 handshakes answered
}

func newTestSite(t *testing.T) *testSite {
	t.Helper()
	s := &testSite{}
	var err error
	if s.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if s.tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *testSite) httpPort() int { return s.httpLn.Addr().(*net.TCPAddr).Port }
func (s *testSite) tlsPort() int  { return s.tlsLn.Addr().(*net.TCPAddr).Port }

// serve starts both listeners with m's handlers.
func (s *testSite) serve(t *testing.T, m *Manager) {
	t.Helper()
	challenge := m.HTTPChallengeHandler(RedirectToHTTPS(s.tlsPort()))
	quiet := log.New(io.Discard, "", 0)
	plain := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w}
			challenge.ServeHTTP(rec, r)
			if rec.status == http.StatusOK && len(r.URL.Path) > len("/.well-known/acme-challenge/") {
				s.httpHits.Add(1)
			}
		}),
		ReadHeaderTimeout: 10 * time.Second, // a stuck test client must not hang Close
		ErrorLog:          quiet,
	}
	tlsConf := &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if IsTLSALPNChallenge(hello) {
				s.alpnHits.Add(1)
			}
			return m.GetCertificate(hello)
		},
		NextProtos: []string{"h2", "http/1.1", ALPNProtocol},
	}
	secure := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("hello from " + r.Host))
		}),
		ReadHeaderTimeout: 10 * time.Second,
		// The CA's validation connections and our probes close right
		// after the handshake, which http.Server would log as errors.
		ErrorLog: quiet,
	}
	go func() { _ = plain.Serve(s.httpLn) }()
	go func() { _ = secure.Serve(tls.NewListener(s.tlsLn, tlsConf)) }()
	t.Cleanup(func() {
		_ = plain.Close()
		_ = secure.Close()
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

// handshake connects to the site's https listener as a client trusting only
// Pebble's root, and returns the verified leaf.
func (s *testSite) handshake(t *testing.T, ca *testCA, name string) *x509.Certificate {
	t.Helper()
	leaf, err := s.tryHandshake(ca, name)
	if err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	return leaf
}

func (s *testSite) tryHandshake(ca *testCA, name string) (*x509.Certificate, error) {
	// The deadline keeps a broken server from hanging the test.
	d := &net.Dialer{Timeout: 10 * time.Second, Deadline: time.Now().Add(10 * time.Second)}
	conn, err := tls.DialWithDialer(d, "tcp", s.tlsLn.Addr().String(), &tls.Config{
		ServerName: name,
		RootCAs:    ca.issuerRoots,
		NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no peer certificates")
	}
	return certs[0], nil
}

// newTestManager makes a Manager for ca and site with test defaults, which
// tweak may change, and closes it when the test ends.
func newTestManager(t *testing.T, ca *testCA, site *testSite, tweak func(*Options)) (*Manager, *eventLog) {
	t.Helper()
	events := &eventLog{}
	opts := Options{
		Email:            "ops@pqedge.test",
		DirectoryURL:     ca.dirURL,
		CARoots:          ca.apiRoots,
		DataDir:          t.TempDir(),
		HTTPChallenge:    true,
		TLSALPNChallenge: true,
		AltHTTPPort:      site.httpPort(),
		AltTLSALPNPort:   site.tlsPort(),
		Logger:           newTestLogger(t, testLogLevel),
		OnEvent:          events.add,
	}
	if tweak != nil {
		tweak(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m, events
}

// eventLog records OnEvent calls.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

func (l *eventLog) count(kind EventKind) int {
	n := 0
	for _, ev := range l.all() {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// newTestLogger logs to t.Log while the test runs and drops lines after it,
// when certmagic's background goroutines may still log.
func newTestLogger(t *testing.T, level slog.Level) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testLogWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool // guarded by mu
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes; it never sleeps
// for a fixed time to wait for readiness.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// testLogLevel is the level of Manager logs shown by tests (-v).
var testLogLevel = slog.LevelWarn
