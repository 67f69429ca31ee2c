package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/acmetest"
	"github.com/pqedge/pqedge/internal/fleet"
	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/internal/redistest"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// These tests run fleet mode end to end: three pqedge processes (the real
// binary: this test binary under the name pqedge, see TestMain) share one
// listening address with reuse_port, so the kernel spreads connections
// over them as ECMP spreads an anycast address over nodes, and share a
// real redis-server (internal/redistest) as their store. Processes, not
// in-process servers: certmagic keeps ACME challenges in process-wide
// memory, so only separate processes show a challenge answered from the
// store by a node that did not order the certificate. The store outage is
// tested in internal/server (TestFleetOutage), where the rotation can be
// shortened to a second.

// fleetNodes are the node ids of the three processes.
var fleetNodes = []string{"edge-a", "edge-b", "edge-c"}

// fleetProc is one pqedge process of a test fleet.
type fleetProc struct {
	node  string
	admin string // admin listener, host:port
	own   string // a listener of this process alone, host:port
	p     *pqedgeProcess
}

// fleetSetup is what a test fleet's configs share.
type fleetSetup struct {
	dir     string
	redis   *redistest.Server
	keyFile string
	shared  int    // the port every process listens on with reuse_port
	sites   string // the [[site]] tables
	fleet   bool   // write [fleet]
}

func newFleetSetup(t *testing.T) *fleetSetup {
	t.Helper()
	fs := &fleetSetup{dir: t.TempDir(), redis: redistest.Start(t), shared: freeport.Must(t), fleet: true}
	fs.keyFile = filepath.Join(fs.dir, "fleet.key")
	if _, err := fleet.WriteKeyFile(fs.keyFile, false); err != nil {
		t.Fatal(err)
	}
	return fs
}

// procs names the three processes and their addresses.
func (fs *fleetSetup) procs(t *testing.T) []*fleetProc {
	t.Helper()
	var procs []*fleetProc
	for _, node := range fleetNodes {
		procs = append(procs, &fleetProc{node: node, admin: freeport.MustAddr(t), own: freeport.MustAddr(t)})
	}
	return procs
}

// start runs the processes at once and waits until each has started (its
// first config is serving, its certificates obtained).
func (fs *fleetSetup) start(t *testing.T, procs []*fleetProc) {
	t.Helper()
	for _, fp := range procs {
		dir := filepath.Join(fs.dir, fp.node)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "pqedge.toml")
		if err := os.WriteFile(file, []byte(fs.config(dir, fp)), 0o600); err != nil {
			t.Fatal(err)
		}
		fp.p = startPqedge(t, file)
	}
	for _, fp := range procs {
		fp.p.waitLogWithin(t, "pqedge started", 90*time.Second)
	}
}

func (fs *fleetSetup) config(dir string, fp *fleetProc) string {
	var b strings.Builder
	fmt.Fprintf(&b, `data_dir = %q
[admin]
listen = %q
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:%d"
reuse_port = true
[[listener]]
name = "own"
address = %q
`, filepath.Join(dir, "data"), fp.admin, fs.shared, fp.own)
	if fs.fleet {
		fmt.Fprintf(&b, "[fleet]\nstore = %q\nencryption_key_file = %q\nnode_id = %q\n", fs.redis.URL, fs.keyFile, fp.node)
	}
	b.WriteString(fs.sites)
	return b.String()
}

// waitLogWithin is waitLog with a deadline of its own: three race-built
// processes obtaining certificates on a busy machine take longer than one
// that only binds its sockets.
func (p *pqedgeProcess) waitLogWithin(t *testing.T, substr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.stderr.String(), substr) {
		select {
		case err := <-p.done:
			t.Fatalf("pqedge exited (%v) before logging %q; stderr:\n%s", err, substr, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pqedge never logged %q; stderr:\n%s", substr, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric sums the series of a metric whose labels contain every one of
// labels (`name="value"`), from the process's /metrics.
func (fp *fleetProc) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + fp.admin + "/metrics")
	if err != nil {
		t.Fatalf("%s: %v", fp.node, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(series, l)
		}
		if v, err := strconv.ParseFloat(value, 64); match && err == nil {
			sum += v
		}
	}
	return sum
}

// fleetFileSite is an ECDSA site every node serves from the same files.
func fleetFileSite(t *testing.T, dir string) string {
	t.Helper()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"localhost"}, Alg: certs.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKeyPair(filepath.Join(dir, "site"), leaf); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[[site]]
name = "www"
server_names = ["localhost"]
certs = "files"
[[site.cert]]
cert = "%[1]s/site.crt"
key = "%[1]s/site.key"
[[site.route]]
path = "/"
handler = "inspect"
`, dir)
}

// resumeRun makes n connections to addr with a client that offers the
// newest session ticket it got (RFC 8446 section C.4: one use each), and
// counts those that resumed. A failed handshake fails the test.
func resumeRun(t *testing.T, addr string, n int) (resumed int) {
	t.Helper()
	var session *leanclient.Session
	for i := 0; i < n; i++ {
		res, err := leanclient.Dial(t.Context(), addr, &leanclient.Config{
			ServerName: "localhost", Groups: []tls.CurveID{tls.X25519MLKEM768},
			SignatureAlgorithms: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384}, // leaf and CA
			Session:             session, ReadTicket: true, Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatalf("handshake %d of %d: %v", i+1, n, err)
		}
		if res.Resumed {
			resumed++
		}
		if res.Session != nil {
			session = res.Session
		}
	}
	return resumed
}

// TestFleetResumptionE2E: 300 connections of a client that keeps its
// ticket, spread by the kernel over three nodes. With [fleet] at least 95%
// resume, most of them on a node other than the one that issued the
// ticket; without it a ticket resumes only on its issuer, about one
// connection in three.
func TestFleetResumptionE2E(t *testing.T) {
	const n = 300
	for _, tt := range []struct {
		name  string
		fleet bool
	}{{"with fleet", true}, {"without fleet", false}} {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFleetSetup(t)
			fs.fleet = tt.fleet
			fs.sites = fleetFileSite(t, fs.dir)
			procs := fs.procs(t)
			fs.start(t, procs)
			resumed := resumeRun(t, fmt.Sprintf("127.0.0.1:%d", fs.shared), n)
			var self, peer float64
			var perNode []string
			for _, fp := range procs {
				s, p := fp.metric(t, "pqedge_resumptions_total", `origin="self"`), fp.metric(t, "pqedge_resumptions_total", `origin="peer"`)
				hs := fp.metric(t, "pqedge_handshakes_total")
				self, peer = self+s, peer+p
				perNode = append(perNode, fmt.Sprintf("%s: %v handshakes, %v resumed own tickets, %v a peer's", fp.node, hs, s, p))
				if hs < n/10 {
					t.Errorf("%s took %v of %d connections: the kernel did not spread them", fp.node, hs, n+1)
				}
			}
			t.Logf("%d of %d resumed; %s", resumed, n, strings.Join(perNode, "; "))
			if got := int(self + peer); got != resumed {
				t.Errorf("the nodes counted %d resumptions, the client %d", got, resumed)
			}
			if tt.fleet {
				if resumed < n*95/100 {
					t.Errorf("%d of %d resumed with [fleet], want at least 95%%", resumed, n)
				}
				if peer <= self {
					t.Errorf("%v resumptions on a peer of the issuer, %v on the issuer: want most on a peer", peer, self)
				}
				return
			}
			// One in three, with the kernel's hash as the dice: 20% to 47%
			// is five standard deviations either side of 100 in 300.
			if resumed < n*20/100 || resumed > n*47/100 {
				t.Errorf("%d of %d resumed without [fleet], want about one in three", resumed, n)
			}
			if peer != 0 {
				t.Errorf("%v resumptions of a peer's ticket without [fleet]", peer)
			}
		})
	}
}

// TestFleetACMEE2E: three nodes start at once against Pebble; one orders
// the certificate for the fleet, and the CA's TLS-ALPN-01 validation is
// answered by another (a proxy in front of the validation port sends it to
// a node that does not hold the order's lock), which has the challenge
// only through the store. Every node serves the one certificate, and the
// store holds no private key or ticket key in plaintext.
func TestFleetACMEE2E(t *testing.T) {
	const name = "acme.pqedge.test"
	fs := newFleetSetup(t)
	validation := freeport.Must(t)
	ca := acmetest.Start(t, acmetest.Options{TLSPort: validation, HTTPPort: freeport.Must(t)})
	rootsFile := filepath.Join(fs.dir, "pebble.pem")
	if err := os.WriteFile(rootsFile, ca.APIRootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	fs.sites = fmt.Sprintf(`
[[site]]
name = "acme"
server_names = [%q]
certs = "acme"
[site.acme]
email = "ops@pqedge.test"
directory = %q
ca_roots = %q
[[site.route]]
path = "/"
handler = "inspect"
`, name, ca.DirectoryURL, rootsFile)

	procs := fs.procs(t)
	proxy := startValidationProxy(t, validation, fs.redis, "pqedge:lock:issue_cert_"+name, func(holder string) map[string]string {
		others := map[string]string{}
		for _, fp := range procs {
			if fp.node != holder {
				others[fp.node] = fp.own
			}
		}
		return others
	})
	fs.start(t, procs)
	started := procs

	var orderer string
	var obtained float64
	for _, fp := range started {
		if n := fp.metric(t, "pqedge_acme_events_total", `kind="obtained"`); n > 0 {
			orderer, obtained = fp.node, obtained+n
		}
	}
	if obtained != 1 {
		t.Fatalf("%v certificates obtained by three nodes starting together, want 1", obtained)
	}
	answers := proxy.answers()
	if len(answers) == 0 {
		t.Fatal("the CA's validation never reached the proxy")
	}
	for _, a := range answers {
		if a.holder != orderer || a.answeredBy == orderer || a.answeredBy == "" {
			t.Errorf("validation with lock held by %q answered by %q; the orderer is %s", a.holder, a.answeredBy, orderer)
		}
	}
	serial := ""
	for _, fp := range started {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", fp.own, &tls.Config{ServerName: name, RootCAs: ca.IssuerRoots})
		if err != nil {
			t.Fatalf("%s: %v", fp.node, err)
		}
		got := c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
		c.Close()
		if serial == "" {
			serial = got
		}
		if got != serial {
			t.Errorf("%s serves serial %s, %s serves %s", fp.node, got, started[0].node, serial)
		}
	}
	fleetScanStore(t, fs)
}

// validationAnswer is one validation connection the proxy passed on.
type validationAnswer struct {
	holder     string // the node holding the order's lock
	answeredBy string // the node the proxy sent it to
}

type validationProxy struct {
	mu   sync.Mutex
	seen []validationAnswer
}

func (vp *validationProxy) answers() []validationAnswer {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	return append([]validationAnswer(nil), vp.seen...)
}

// startValidationProxy listens on port for the CA's validation
// connections. For each it reads which node holds lockKey (the token is
// NODE/random), asks others for the other nodes' addresses and splices the
// connection to the first that accepts one: the nodes start together, and
// one may not have bound its sockets yet when the orderer's validation
// comes.
func startValidationProxy(t *testing.T, port int, store *redistest.Server, lockKey string, others func(holder string) map[string]string) *validationProxy {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rc := redis.NewClient(&redis.Options{Network: "unix", Addr: store.Socket, DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { rc.Close() })
	vp := &validationProxy{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				token, err := rc.Get(ctx, lockKey).Result()
				if err != nil {
					t.Errorf("validation arrived while no node held %s: %v", lockKey, err)
					return
				}
				holder, _, _ := strings.Cut(token, "/")
				var node string
				var up net.Conn
				for deadline := time.Now().Add(30 * time.Second); up == nil; {
					for n, addr := range others(holder) {
						if up, err = net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
							node = n
							break
						}
					}
					if up == nil && time.Now().After(deadline) {
						t.Errorf("no node but %s accepted the validation: %v", holder, err)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				defer up.Close()
				vp.mu.Lock()
				vp.seen = append(vp.seen, validationAnswer{holder: holder, answeredBy: node})
				vp.mu.Unlock()
				// The validation is one short handshake; the deadline
				// ends a stalled one.
				deadline := time.Now().Add(30 * time.Second)
				c.SetDeadline(deadline)
				up.SetDeadline(deadline)
				go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, up)
			}()
		}
	}()
	return vp
}

// fleetScanStore reads every value in the store and fails on a PEM block
// or the raw, hex or base64 bytes of a ticket key the fleet holds.
func fleetScanStore(t *testing.T, fs *fleetSetup) {
	t.Helper()
	opts, err := fleet.Settings{Store: fs.redis.URL, EncryptionKeyFile: fs.keyFile}.Options()
	if err != nil {
		t.Fatal(err)
	}
	opts.NodeID = "scanner"
	f, err := fleet.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys, err := f.Tickets().Keys(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var secrets [][]byte
	for _, k := range keys {
		s := k.Secret[:]
		secrets = append(secrets, s, []byte(hex.EncodeToString(s)), []byte(base64.StdEncoding.EncodeToString(s)), []byte(base64.RawURLEncoding.EncodeToString(s)))
	}
	values := fs.redis.Values(t)
	for where, v := range values {
		if bytes.Contains(v, []byte("PRIVATE KEY")) || bytes.Contains(v, []byte("-----BEGIN")) {
			t.Errorf("%s holds a PEM block in plaintext", where)
		}
		for _, s := range secrets {
			if bytes.Contains(v, s) {
				t.Errorf("%s holds a ticket key in plaintext", where)
			}
		}
	}
	acme := 0
	for where := range values {
		if strings.HasPrefix(where, "pqedge:acme:") {
			acme++
		}
	}
	if len(keys) == 0 || acme == 0 {
		t.Fatalf("the store holds %d ACME values and %d ticket keys: nothing to check", acme, len(keys))
	}
	t.Logf("scanned %d values (%d ACME); no plaintext private key or ticket key (%d keys checked)", len(values), acme, len(keys))
}
