package compat

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"flag"
	"fmt"
	"github.com/pqedge/pqedge/pqtls/leanclient"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/peers"
	"github.com/pqedge/pqedge/internal/server"
	"github.com/pqedge/pqedge/pqtls"
)

var update = flag.Bool("update", false, "rewrite docs/COMPAT.md and docs/compat.json from this run")

// mode is one server configuration of the suite.
type mode struct {
	name    string
	policy  string
	pqCerts string
	compat  bool // also open the [compat] listeners
}

var modes = []mode{
	{name: "pq-preferred, pq_certs=off", policy: "pq-preferred", pqCerts: "off"},
	{name: "pq-only, pq_certs=off", policy: "pq-only", pqCerts: "off"},
	{name: "pq-warn, pq_certs=off", policy: "pq-warn", pqCerts: "off"},
	{name: "pq-preferred, pq_certs=trusted", policy: "pq-preferred", pqCerts: "trusted", compat: true},
	{name: "pq-preferred, pq_certs=always", policy: "pq-preferred", pqCerts: "always", compat: true},
}

var pqGroups = []string{"X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "MLKEM1024"}

// config is the mode's pqedge config. pq-only and pq-warn serve their
// policy's own groups, as an operator who names only the policy gets;
// pq-preferred lists its groups plus MLKEM1024 (explicitGroups), so that
// s_client can try the pure ML-KEM group too.
func (m mode) config(data string) string {
	groups := ""
	if m.policy == "pq-preferred" {
		groups = "groups = [" + quoteList(explicitGroups) + "]\n"
	}
	cfg := fmt.Sprintf(`data_dir = %q
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:0"
http3 = true
[[site]]
name = "local"
server_names = ["localhost"]
pq_certs = %q
[site.tls]
policy = %q
%s[[site.route]]
path = "/"
handler = "inspect"
[[site.route]]
path = "/compat/"
handler = "compat"
`, data, m.pqCerts, m.policy, groups)
	if m.compat {
		cfg += `[compat]
site = "local"
groups = ["X25519MLKEM768", "x25519"]
certs = ["ecdsa-p256", "mldsa44", "mldsa65", "mldsa87"]
`
	} else {
		cfg = strings.Replace(cfg, "[[site.route]]\npath = \"/compat/\"\nhandler = \"compat\"\n", "", 1)
	}
	return cfg
}

// served is the mode with the groups its site serves.
func (m mode) served(t *testing.T) Mode {
	md := Mode{Name: m.name, Explicit: m.policy == "pq-preferred"}
	if md.Explicit {
		md.Groups = explicitGroups
		return md
	}
	p, err := pqtls.LookupPreset(m.policy)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range p.Groups {
		md.Groups = append(md.Groups, pqtls.GroupName(g))
	}
	return md
}

// explicitGroups are the pq-preferred modes' groups: the post-quantum ones
// with MLKEM1024, then x25519 and secp256r1.
var explicitGroups = append(slices.Clone(pqGroups), "x25519", "secp256r1")

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

// edge is a running pqedge with its handshake events.
type edge struct {
	srv *server.Server
	mu  sync.Mutex
	evs []server.HandshakeEvent
}

func startEdge(t *testing.T, m mode, data string) *edge {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pqedge.toml")
	if err := os.WriteFile(file, []byte(m.config(data)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("suite config is invalid:\n%v", err)
	}
	e := &edge{}
	e.srv, err = server.New(cfg, server.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnHandshake: func(ev server.HandshakeEvent) {
			e.mu.Lock()
			e.evs = append(e.evs, ev)
			e.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	})
	return e
}

func (e *edge) port(listener string) string {
	a := e.srv.ListenerAddr(listener)
	if a == nil {
		return "0"
	}
	return strconv.Itoa(a.(*net.TCPAddr).Port)
}

func (e *edge) mark() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.evs)
}

// since waits until a handshake on listener over transport ("tcp",
// "quic") after mark has been recorded
// (a failing client may exit before the server has classified the failure)
// and returns the first completed one, else the first failure.
func (e *edge) since(t *testing.T, mark int, listener, transport string) (server.HandshakeEvent, bool) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mu.Lock()
		var found []server.HandshakeEvent
		for _, ev := range e.evs[mark:] {
			if ev.Listener == listener && ev.Transport == transport {
				found = append(found, ev)
			}
		}
		e.mu.Unlock()
		for _, ev := range found {
			if ev.Handshake != nil {
				return ev, true
			}
		}
		if len(found) > 0 {
			return found[0], true
		}
		if time.Now().After(deadline) {
			return server.HandshakeEvent{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// env is what client cases get.
type env struct {
	t      *testing.T
	ctx    context.Context
	url    string // https://localhost:PORT
	port   string
	roots  string // PEM bundle: classical and ML-DSA local roots
	class  string // classical root only
	pqRoot string
	spki   []string // SHA-256 of every ML-DSA leaf's public key, base64
	trixie *peers.Chroot
	inRoot string // roots, as seen inside the trixie root
	edge   *edge
}

// clientCase is one client; want says what must hold in a mode ("" fields
// are recorded, not checked).
type clientCase struct {
	name     string
	target   string
	quic     bool                // HTTP/3: the handshake is looked for over QUIC
	listener func(e *env) string // default "https"
	run      func(e *env) Outcome
	want     func(m mode) expect
	onlyIn   func(m mode) bool
}

type expect struct {
	group, signature, handshake, page string
}

func TestCompat(t *testing.T) {
	if testing.Short() {
		t.Skip("the compatibility suite drives real browsers; skipped with -short")
	}
	chromium := peers.Binary(t, "chromium")
	firefox := peers.Binary(t, "firefox-esr")
	certutil := peers.Binary(t, "certutil")
	curl := peers.Binary(t, "curl")
	trixie := peers.Trixie(t)

	data := filepath.Join(t.TempDir(), "data")
	matrix := &Matrix{Versions: versions(t, chromium, firefox, curl, trixie)}
	for _, m := range modes {
		matrix.Modes = append(matrix.Modes, m.served(t))
		e := startEdge(t, m, data)
		host, inside := trixie.TempDir(t)
		local := filepath.Join(data, "local")
		bundle := filepath.Join(host, "roots.pem")
		concat(t, bundle, filepath.Join(local, "classical-ca.crt"), filepath.Join(local, "pq-ca.crt"))
		ev := &env{
			t: t, edge: e, port: e.port("https"), roots: bundle, trixie: trixie, inRoot: inside + "/roots.pem",
			class: filepath.Join(local, "classical-ca.crt"), pqRoot: filepath.Join(local, "pq-ca.crt"),
		}
		ev.url = "https://localhost:" + ev.port
		ev.spki = mldsaSPKIs(t, e, m)
		for _, c := range cases(chromium, firefox, certutil, curl) {
			if c.onlyIn != nil && !c.onlyIn(m) {
				continue
			}
			t.Run(m.policy+"_"+m.pqCerts+"/"+c.name+"/"+c.target, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				ev.t, ev.ctx = t, ctx
				listener := "https"
				if c.listener != nil {
					listener = c.listener(ev)
				}
				transport := "tcp"
				if c.quic {
					transport = "quic"
				}
				mark := e.mark()
				out := c.run(ev)
				rec, ok := e.since(t, mark, listener, transport)
				row := Row{Client: c.name, Mode: m.name, Target: c.target, Transport: transport, Page: out.Verdict}
				if !ok {
					row.Handshake = "none"
				} else {
					row.Family = familyOf(rec)
					if rec.Handshake != nil {
						row.Handshake = "ok"
						row.Group, row.Signature, row.HelloRetry = rec.Handshake.GroupName(), rec.Handshake.SignatureName(), rec.Handshake.HelloRetry
					} else {
						row.Handshake = "failed: " + rec.Reason
						row.Note = rec.Err.Error()
					}
				}
				if row.Page == "" && out.Err != nil {
					row.Page = "error"
					if row.Note == "" {
						row.Note = shorten(out.Err.Error())
					}
				}
				if row.Page == "" && out.Body != "" {
					row.Page = summarize(out.Body)
				}
				matrix.Rows = append(matrix.Rows, row)
				t.Logf("%+v", row)
				if c.want == nil {
					return
				}
				w := c.want(m)
				check := func(what, got, want string) {
					if want != "" && got != want {
						t.Errorf("%s = %q, want %q (client output: %s)", what, got, want, shorten(out.Body))
					}
				}
				check("group", row.Group, w.group)
				check("signature", row.Signature, w.signature)
				check("handshake", row.Handshake, w.handshake)
				check("page", row.Page, w.page)
			})
		}
	}
	out := os.Getenv("PQEDGE_COMPAT_OUT")
	if *update {
		out = "../../docs"
	}
	if out != "" && !t.Failed() {
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := matrix.Write(out); err != nil {
			t.Fatal(err)
		}
	}
}

func familyOf(ev server.HandshakeEvent) string {
	if ev.Hello == nil {
		return "unknown"
	}
	return ev.Hello.Family()
}

var (
	trRe   = regexp.MustCompile(`<tr [^>]*data-listener="([^"]+)"[^>]*>`)
	attrRe = regexp.MustCompile(`data-result="(\w+)"`)
)

// summarize names what a client showed when it was not the verdict.
func summarize(body string) string {
	if m := trRe.FindAllStringSubmatch(body, -1); len(m) > 0 {
		var ok []string
		for _, tr := range trRe.FindAllString(body, -1) {
			if r := attrRe.FindStringSubmatch(tr); r != nil && r[1] == "ok" {
				ok = append(ok, strings.TrimPrefix(trRe.FindStringSubmatch(tr)[1], "compat-"))
			}
		}
		return fmt.Sprintf("compat page: %d/%d ok (%s)", len(ok), len(m), strings.Join(ok, ", "))
	}
	if strings.Contains(body, "chrome-error://") || strings.Contains(body, "ERR_") {
		return "browser error page"
	}
	return "no verdict"
}

func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

func concat(t *testing.T, dst string, srcs ...string) {
	var all []byte
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if err := os.WriteFile(dst, all, 0o644); err != nil {
		t.Fatal(err)
	}
}

func versions(t *testing.T, chromium, firefox, curl string, trixie *peers.Chroot) map[string]string {
	ctx := context.Background()
	first := func(cmd *exec.Cmd) string {
		out, _ := cmd.Output()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	return map[string]string{
		"chromium":           first(exec.CommandContext(ctx, chromium, "--version")),
		"firefox":            first(exec.CommandContext(ctx, firefox, "--version")),
		"curl (bookworm)":    first(exec.CommandContext(ctx, curl, "--version")),
		"curl (trixie)":      first(trixie.Command(ctx, "curl", "--version")),
		"openssl s_client":   first(trixie.Command(ctx, "openssl", "version")),
		"go crypto/tls":      runtime.Version(),
		"pqedge server (Go)": runtime.Version(),
	}
}

// goClient fetches the inspect page with Go's crypto/tls, default settings.
func goClient(e *env) Outcome {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(e.roots)
	if err != nil {
		return Outcome{Err: err}
	}
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	req, _ := http.NewRequestWithContext(e.ctx, "GET", e.url+"/", nil)
	resp, err := c.Do(req)
	if err != nil {
		return Outcome{Err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return Outcome{Body: string(body), Verdict: verdictIn(string(body))}
}

// sClient runs openssl s_client 3.5 with the given options and sends an
// HTTP/1.1 request for the inspect JSON.
func sClient(e *env, port string, opts ...string) Outcome {
	args := append([]string{"s_client", "-connect", "127.0.0.1:" + port, "-servername", "localhost",
		"-CAfile", e.inRoot, "-verify_return_error", "-ign_eof", "-quiet"}, opts...)
	return Command(e.trixie.Command(e.ctx, "openssl", args...),
		"GET /?format=json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// mldsaSPKIs collects the SPKI hashes of the ML-DSA leaves a mode serves:
// the site's (under always) and the compat listeners', by asking for them
// with the lean client offering every ML-DSA scheme (a Go client would get
// the site's classical chain: it leaves ML-DSA out of
// signature_algorithms_cert, go.dev/issue/82536).
func mldsaSPKIs(t *testing.T, e *edge, m mode) []string {
	var listeners []string
	if m.pqCerts == "always" {
		listeners = append(listeners, "https")
	}
	if m.compat {
		for _, g := range []string{"X25519MLKEM768", "x25519"} {
			for _, a := range []string{"mldsa44", "mldsa65", "mldsa87"} {
				listeners = append(listeners, "compat-"+g+"-"+a)
			}
		}
	}
	var out []string
	for _, l := range listeners {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := leanclient.Dial(ctx, "127.0.0.1:"+e.port(l), &leanclient.Config{ServerName: "localhost",
			Groups:              []tls.CurveID{tls.X25519MLKEM768, tls.X25519},
			SignatureAlgorithms: []tls.SignatureScheme{tls.MLDSA44, tls.MLDSA65, tls.MLDSA87}})
		cancel()
		if err != nil {
			t.Fatalf("failed to fetch the ML-DSA leaf of %s: %v", l, err)
		}
		leaf, err := x509.ParseCertificate(res.RawCertificates[0])
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
		out = append(out, base64.StdEncoding.EncodeToString(sum[:]))
	}
	return out
}
