// Package acmetest runs an in-process Pebble ACME CA on loopback for tests
// of pqedge's ACME support (package certs/acme and the server).
//
// It is test support only: nothing outside _test.go files may import it.
// Pebble's validation authority resolves every name to 127.0.0.1 through a
// loopback DNS server started here, and validates HTTP-01 and TLS-ALPN-01
// against the ports the test names, so challenges go through the code under
// test's real listeners. Nothing leaves the machine.
package acmetest

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/pqedge/pqedge/internal/freeport"
)

// Options says where the CA validates and what it issues.
type Options struct {
	// HTTPPort and TLSPort are the loopback ports Pebble's validation
	// authority sends HTTP-01 and TLS-ALPN-01 validations to.
	HTTPPort, TLSPort int
	// Validity is the lifetime of issued certificates, rounded down to
	// whole seconds; 0 means Pebble's default of about 90 days.
	Validity time.Duration
	// NoARI leaves renewalInfo out of the directory, as a CA without ACME
	// Renewal Information (RFC 9773) does: renewal then falls due at a
	// fixed share of the lifetime, the same moment on every node, instead
	// of at a time the client picks at random in the CA's window (which
	// for a certificate of a few seconds is its whole lifetime).
	NoARI bool
}

// CA is a running Pebble. It stops when the test ends.
type CA struct {
	// DirectoryURL is the ACME directory (https).
	DirectoryURL string
	// APIRoots trusts the ACME API's own TLS certificate, which is not the
	// issuing root: pass it as the ACME client's CA roots.
	APIRoots *x509.CertPool
	// APIRootPEM is APIRoots as PEM, for configs that name a roots file.
	APIRootPEM []byte
	// IssuerRoots trusts the certificates the CA issues: give it to TLS
	// clients of the server under test.
	IssuerRoots *x509.CertPool

	srv *httptest.Server
}

// Start runs a Pebble CA until the test ends. It sets Pebble's environment
// knobs with t.Setenv, so the test must not be parallel. Pebble's log is
// printed if the test fails.
func Start(t testing.TB, opts Options) *CA {
	t.Helper()
	// Pebble reads these in va.New and wfe.New: no random validation delay,
	// no rejected nonces, and a fresh authorization (so a real validation)
	// for every order, renewals included.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")

	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log:\n%s", logs.String())
		}
	})
	logger := log.New(logs, "pebble ", log.Lmicroseconds)

	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: uint64(opts.Validity / time.Second)},
	})
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, startDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	var handler http.Handler = front.Handler()
	if opts.NoARI {
		handler = withoutARI(handler)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ErrorLog = logger // handshake errors from refused clients are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)

	apiRoots := x509.NewCertPool()
	apiRoots.AddCert(srv.Certificate())
	issuerRoots := x509.NewCertPool()
	issuerRoots.AddCert(authority.GetRootCert(0).Cert)
	return &CA{
		DirectoryURL: srv.URL + wfe.DirectoryPath,
		APIRoots:     apiRoots,
		APIRootPEM:   pemCert(srv.Certificate().Raw),
		IssuerRoots:  issuerRoots,
		srv:          srv,
	}
}

// Close stops the CA before the test ends, to test what happens when it
// goes away.
func (c *CA) Close() { c.srv.Close() }

// SkipIfUnrenewable skips a test that renews leaf when Pebble cannot: it
// stores serials without the DER sign byte and looks up an ARI "replaces"
// certificate ID with it, so renewing a certificate whose serial's first
// byte is 0x80 or more fails with a 500 (letsencrypt/pebble#550; Boulder is
// not affected). Pebble's serials are below 2^63, so this hits only
// seven-byte serials, about one certificate in 256.
func SkipIfUnrenewable(t testing.TB, leaf *x509.Certificate) {
	t.Helper()
	if b := leaf.SerialNumber.Bytes(); len(b) > 0 && b[0] >= 0x80 {
		t.Skipf("Pebble cannot renew a certificate with serial %x (letsencrypt/pebble#550)", b)
	}
}

// UnreachableDirectory returns an https directory URL on a loopback port
// nothing listens on, so connecting to it is refused at once.
func UnreachableDirectory(t testing.TB) string {
	return "https://127.0.0.1:" + strconv.Itoa(freeport.Must(t)) + "/dir"
}

// startDNS serves A 127.0.0.1 for every name, over TCP as Pebble's VA asks,
// and returns its address.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				r.Answer = append(r.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(r)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// withoutARI serves the ACME directory without its renewalInfo entry.
func withoutARI(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != wfe.DirectoryPath {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var dir map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &dir) != nil {
			http.Error(w, "acmetest: Pebble's directory did not decode", http.StatusInternalServerError)
			return
		}
		delete(dir, "renewalInfo")
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		json.NewEncoder(w).Encode(dir)
	})
}
