package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/acmetest"
	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// acmeName is the name the test sites get certificates for; the test CA's
// DNS resolves every name to 127.0.0.1.
const acmeName = "acme.pqedge.test"

// acmeTimeout bounds one issuance or renewal against the in-process Pebble.
const acmeTimeout = 60 * time.Second

// acmeEnv is a Pebble CA and the loopback ports pqedge must listen on for
// its validations to reach pqedge's own listeners.
type acmeEnv struct {
	ca        *acmetest.CA
	httpsPort int // the https listener: TLS-ALPN-01
	httpPort  int // acme.http_port: HTTP-01
	roots     string
}

func newACMEEnv(t *testing.T, validity time.Duration) *acmeEnv {
	t.Helper()
	e := &acmeEnv{httpsPort: freeport.Must(t), httpPort: freeport.Must(t)}
	e.ca = acmetest.Start(t, acmetest.Options{HTTPPort: e.httpPort, TLSPort: e.httpsPort, Validity: validity})
	e.roots = filepath.Join(t.TempDir(), "pebble-api.pem")
	if err := os.WriteFile(e.roots, e.ca.APIRootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// acmeSite describes the ACME site of a test config.
type acmeSiteConfig struct {
	name      string // site name; default "acme"
	directory string // default the test CA
	http01    bool   // open acme.http_port and turn TLS-ALPN-01 off
	extra     string // more keys of the [[site]] table
}

// config is a whole pqedge config: an https listener on the port the CA
// validates TLS-ALPN-01 on, and the given ACME sites.
func (e *acmeEnv) config(sites ...acmeSiteConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, `data_dir = "{{DATA}}/data"
[admin]
listen = "127.0.0.1:0"
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:%d"
`, e.httpsPort)
	for i, s := range sites {
		if s.name == "" {
			s.name = "acme"
		}
		if s.directory == "" {
			s.directory = e.ca.DirectoryURL
		}
		host := acmeName
		if i > 0 {
			host = s.name + ".pqedge.test"
		}
		fmt.Fprintf(&b, `
[[site]]
name = %q
server_names = [%q]
certs = "acme"
%s
[site.acme]
email = "ops@pqedge.test"
directory = %q
ca_roots = %q
`, s.name, host, s.extra, s.directory, e.roots)
		if s.http01 {
			fmt.Fprintf(&b, "http_port = %d\ntls_alpn = false\n", e.httpPort)
		}
		b.WriteString("[[site.route]]\npath = \"/\"\nhandler = \"inspect\"\n")
	}
	return b.String()
}

// handshake connects as a client trusting roots and returns the state.
func acmeHandshake(addr, name string, roots *x509.CertPool) (tls.ConnectionState, error) {
	// The deadline keeps a broken server from hanging the test.
	d := &net.Dialer{Timeout: 10 * time.Second, Deadline: time.Now().Add(10 * time.Second)}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func mustACMEHandshake(t *testing.T, addr, name string, roots *x509.CertPool) tls.ConnectionState {
	t.Helper()
	cs, err := acmeHandshake(addr, name, roots)
	if err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	return cs
}

// acmeClient is an HTTP client that reaches name at addr and trusts roots.
func acmeClient(addr, name string, roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: name, RootCAs: roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			ForceAttemptHTTP2: true,
		},
		// The HTTP-01 listener's redirect is what a test looks at.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// TestACMEObtainAndServe: a site with certs = "acme" gets its certificate
// at startup, validated through pqedge's own https listener (TLS-ALPN-01)
// or its acme.http_port listener (HTTP-01), and serves it with a hybrid
// post-quantum key exchange. Each case has the other challenge off, and
// pqedge holds both ports, so certmagic cannot have answered it with a
// listener of its own.
func TestACMEObtainAndServe(t *testing.T) {
	for _, tt := range []struct {
		name   string
		http01 bool
	}{
		{"tls-alpn-01", false},
		{"http-01", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newACMEEnv(t, 0)
			ts := startServer(t, env.config(acmeSiteConfig{http01: tt.http01}))
			addr := ts.addr("https")

			cs := mustACMEHandshake(t, addr, acmeName, env.ca.IssuerRoots)
			leaf := cs.PeerCertificates[0]
			if !slices.Equal(leaf.DNSNames, []string{acmeName}) {
				t.Errorf("leaf names %v, want [%s]", leaf.DNSNames, acmeName)
			}
			if cs.CurveID != tls.X25519MLKEM768 {
				t.Errorf("group %v, want X25519MLKEM768", cs.CurveID)
			}
			// The handshake record knows the ACME leaf's key.
			rep := inspect(t, acmeClient(addr, acmeName, env.ca.IssuerRoots), "https://"+acmeName+"/")
			if rep.Group != "X25519MLKEM768" || rep.Signature != "ecdsa_secp256r1_sha256" {
				t.Errorf("inspect says group %q signature %q, want X25519MLKEM768 and ecdsa_secp256r1_sha256", rep.Group, rep.Signature)
			}

			if got := ts.metric(`pqedge_acme_events_total{kind="obtained",site="acme"}`); got != "1" {
				t.Errorf("obtained events %q, want 1", got)
			}
			days, err := strconv.ParseFloat(ts.metric(`pqedge_certificate_expiry_days{kind="classical",site="acme"}`), 64)
			if want := time.Until(leaf.NotAfter).Hours() / 24; err != nil || days < want-1 || days > want+1 {
				t.Errorf("classical expiry gauge %v (%v), want about %.1f days", days, err, want)
			}

			if tt.http01 {
				// Requests that are not challenges are redirected to the
				// https listener.
				c := acmeClient("127.0.0.1:"+strconv.Itoa(env.httpPort), acmeName, nil)
				resp, err := c.Get("http://" + acmeName + "/some/page?q=1")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				want := fmt.Sprintf("https://%s:%d/some/page?q=1", acmeName, env.httpsPort)
				if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
					t.Errorf("HTTP-01 listener answered %s, Location %q; want 308 to %s", resp.Status, resp.Header.Get("Location"), want)
				}
			}

			// A name the site does not have gets no certificate.
			if _, err := acmeHandshake(addr, "other.pqedge.test", env.ca.IssuerRoots); err == nil {
				t.Error("handshake for an unconfigured name succeeded")
			}
		})
	}
}

// TestACMERenewalWithoutRestart: a renewed certificate is served to new
// handshakes at once.
func TestACMERenewalWithoutRestart(t *testing.T) {
	env := newACMEEnv(t, 0)
	ts := startServer(t, env.config(acmeSiteConfig{}))
	before := mustACMEHandshake(t, ts.addr("https"), acmeName, env.ca.IssuerRoots).PeerCertificates[0]
	acmetest.SkipIfUnrenewable(t, before)

	open := ts.srv.acme.open()
	if len(open) != 1 {
		t.Fatalf("%d ACME managers open, want 1", len(open))
	}
	ctx, cancel := context.WithTimeout(context.Background(), acmeTimeout)
	defer cancel()
	if err := open[0].m.RenewNow(ctx); err != nil {
		t.Fatalf("RenewNow: %v", err)
	}
	after := mustACMEHandshake(t, ts.addr("https"), acmeName, env.ca.IssuerRoots).PeerCertificates[0]
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatalf("serial %x unchanged after renewal", after.SerialNumber)
	}
	if got := ts.metric(`pqedge_acme_events_total{kind="renewed",site="acme"}`); got != "1" {
		t.Errorf("renewed events %q, want 1", got)
	}
}

// TestACMEReload: an unchanged reload reuses the Manager (no new order); a
// reload can add an ACME site; a reload whose new ACME site cannot get a
// certificate fails with the directory in the error and leaves the old
// config serving; a reload without ACME sites closes the Managers.
func TestACMEReload(t *testing.T) {
	env := newACMEEnv(t, 0)
	cfgText := env.config(acmeSiteConfig{})
	ts := startServer(t, cfgText)
	addr := ts.addr("https")
	first := mustACMEHandshake(t, addr, acmeName, env.ca.IssuerRoots).PeerCertificates[0]
	m := ts.srv.acme.open()[0].m

	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, cfgText)); err != nil {
		t.Fatalf("unchanged reload: %v", err)
	}
	if open := ts.srv.acme.open(); len(open) != 1 || open[0].m != m {
		t.Errorf("unchanged reload did not reuse the Manager: %d open", len(open))
	}
	if got := mustACMEHandshake(t, addr, acmeName, env.ca.IssuerRoots).PeerCertificates[0]; got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("unchanged reload changed the certificate")
	}
	if got := ts.metric(`pqedge_acme_events_total{kind="obtained",site="acme"}`); got != "1" {
		t.Errorf("obtained events %q after an unchanged reload, want 1", got)
	}

	// A second site, over HTTP-01: its listener opens during the reload,
	// and the CA validates it while the old config is still current.
	second := acmeSiteConfig{name: "second", http01: true}
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, env.config(acmeSiteConfig{}, second))); err != nil {
		t.Fatalf("reload adding an ACME site: %v", err)
	}
	mustACMEHandshake(t, addr, "second.pqedge.test", env.ca.IssuerRoots)
	open := ts.srv.acme.open()
	if len(open) != 2 || !slices.ContainsFunc(open, func(e *acmeEntry) bool { return e.m == m }) {
		t.Fatalf("after adding a site with other challenge settings %d Managers are open, want the first and a new one", len(open))
	}

	unreachable := acmetest.UnreachableDirectory(t)
	err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, env.config(acmeSiteConfig{}, second, acmeSiteConfig{name: "broken", directory: unreachable})))
	if err == nil {
		t.Fatal("reload with an unreachable ACME directory succeeded")
	}
	if !strings.Contains(err.Error(), unreachable) || !strings.Contains(err.Error(), `site "broken"`) || !strings.Contains(err.Error(), "hint:") {
		t.Errorf("reload error %q does not name the site, the directory and a hint", err)
	}
	if got := mustACMEHandshake(t, addr, acmeName, env.ca.IssuerRoots).PeerCertificates[0]; got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("after a failed reload the certificate changed")
	}
	if got := ts.srv.acme.open(); !slices.Equal(got, open) {
		t.Errorf("after a failed reload %d Managers are open, want the %d from before", len(got), len(open))
	}
	mustACMEHandshake(t, addr, "second.pqedge.test", env.ca.IssuerRoots)
	if got := ts.metric(`pqedge_config_reloads_total{result="invalid"}`); got != "1" {
		t.Errorf("invalid reloads %q, want 1", got)
	}

	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, baseConfig+inspectSite)); err != nil {
		t.Fatalf("reload without ACME sites: %v", err)
	}
	if open := ts.srv.acme.open(); len(open) != 0 {
		t.Errorf("%d Managers open after the last ACME site went", len(open))
	}
	if _, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(env.httpPort)); err == nil {
		t.Error("the HTTP-01 listener is still open after its site went")
	}
	if err := m.Manage(context.Background(), []string{acmeName}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("the unused Manager was not closed: Manage = %v", err)
	}
}

// TestACMEStartupErrors: a config whose ACME certificates cannot be had
// does not start, says why, and leaves no socket open.
func TestACMEStartupErrors(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.LeafOptions{Names: []string{acmeName}, Alg: certs.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKeyPair(filepath.Join(dir, "classical"), leaf); err != nil {
		t.Fatal(err)
	}
	env := &acmeEnv{httpsPort: freeport.Must(t), httpPort: freeport.Must(t), roots: filepath.Join(dir, "roots.pem")}
	os.WriteFile(env.roots, []byte("not PEM\n"), 0o644)
	unreachable := acmetest.UnreachableDirectory(t)
	for _, tt := range []struct {
		name  string
		site  acmeSiteConfig
		roots string
		want  []string
	}{
		{"unreachable directory", acmeSiteConfig{directory: unreachable, http01: true}, "", []string{unreachable, "cannot reach the ACME directory"}},
		{"classical pair", acmeSiteConfig{directory: unreachable, extra: fmt.Sprintf("[[site.cert]]\ncert = %q\nkey = %q\n",
			filepath.Join(dir, "classical.crt"), filepath.Join(dir, "classical.key"))}, "", []string{"site's ML-DSA chain", "classical.crt"}},
		{"bad ca_roots", acmeSiteConfig{directory: unreachable}, env.roots, []string{"acme.ca_roots", env.roots}},
		{"missing ca_roots", acmeSiteConfig{directory: unreachable}, filepath.Join(dir, "missing.pem"), []string{"acme.ca_roots", "missing.pem"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := *env
			e.ca = &acmetest.CA{DirectoryURL: unreachable}
			e.roots = tt.roots
			cfg := loadConfig(t, t.TempDir(), e.config(tt.site))
			srv, err := New(cfg, Options{Logger: testLogger(t)})
			if err == nil {
				srv.Shutdown(context.Background())
				t.Fatal("started")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, port := range []int{e.httpsPort, e.httpPort} {
				ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					t.Errorf("port %d still taken after the failed start: %v", port, err)
					continue
				}
				ln.Close()
			}
		})
	}
}

// TestACMEWithMLDSAPair: an ACME site may list an ML-DSA pair; pq_certs
// decides who gets it, and everyone else gets the ACME chain. The client is
// the lean one, which offers the ML-DSA schemes in signature_algorithms and
// no signature_algorithms_cert, so it can verify the ML-DSA chain; a Go
// 1.27 client cannot (go.dev/issue/82536) and gets the ACME chain.
func TestACMEWithMLDSAPair(t *testing.T) {
	dir := t.TempDir()
	pqCA, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgMLDSA65})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pqCA.Issue(certs.LeafOptions{Names: []string{acmeName}, Alg: certs.AlgMLDSA65})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKeyPair(filepath.Join(dir, "pq"), leaf); err != nil {
		t.Fatal(err)
	}
	env := newACMEEnv(t, 0)
	for _, tt := range []struct {
		mode, wantSig string
	}{
		{"off", "ecdsa_secp256r1_sha256"},
		{"always", "mldsa65"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			ts := startServer(t, env.config(acmeSiteConfig{extra: fmt.Sprintf("pq_certs = %q\n[[site.cert]]\ncert = %q\nkey = %q\n",
				tt.mode, filepath.Join(dir, "pq.crt"), filepath.Join(dir, "pq.key"))}))
			res, err := leanclient.Dial(t.Context(), ts.addr("https"), &leanclient.Config{ServerName: acmeName, Groups: []tls.CurveID{tls.X25519MLKEM768},
				SignatureAlgorithms: []tls.SignatureScheme{tls.MLDSA65, tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.PSSWithSHA256}, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if got := pqtls.SignatureName(res.SignatureScheme); got != tt.wantSig || !pqtls.IsPostQuantumGroup(res.Group) {
				t.Errorf("signature %q over %s, want %q over a post-quantum group", got, pqtls.GroupName(res.Group), tt.wantSig)
			}
			// A Go client gets the ACME chain whatever the mode.
			roots := env.ca.IssuerRoots.Clone()
			roots.AddCert(pqCA.Root)
			if rep := inspect(t, acmeClient(ts.addr("https"), acmeName, roots), "https://"+acmeName+"/"); rep.Signature != "ecdsa_secp256r1_sha256" {
				t.Errorf("a Go client got signature %q, want the ACME chain's", rep.Signature)
			}
		})
	}
}

// TestACMEChallengeIgnoresPolicy: a pq-only site still answers a validator
// that offers only X25519, and the challenge connection never reaches HTTP.
func TestACMEChallengeIgnoresPolicy(t *testing.T) {
	env := newACMEEnv(t, 0)
	ts := startServer(t, env.config(acmeSiteConfig{extra: "[site.tls]\npolicy = \"pq-only\"\n"}))
	addr := ts.addr("https")
	if _, err := acmeHandshake(addr, acmeName, env.ca.IssuerRoots); err != nil {
		t.Fatalf("post-quantum client: %v", err)
	}
	classical := &tls.Config{ServerName: acmeName, RootCAs: env.ca.IssuerRoots, CurvePreferences: []tls.CurveID{tls.X25519}}
	if c, err := tls.Dial("tcp", addr, classical); err == nil {
		c.Close()
		t.Fatal("pq-only site accepted a classical client")
	}
	// No challenge is in progress, so the validation handshake fails; the
	// failure must come from the ACME challenge lookup, not from the
	// pq-only group policy.
	challenge := &tls.Config{ServerName: acmeName, InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}, CurvePreferences: []tls.CurveID{tls.X25519}}
	_, err := tls.Dial("tcp", addr, challenge)
	// crypto/tls answers a failed GetCertificate with internal_error and a
	// group mismatch with handshake_failure.
	if err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("challenge handshake error = %v, want internal_error from the certificate lookup", err)
	}
}
