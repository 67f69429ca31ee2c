package server

import (
	"crypto/mldsa"
	"crypto/tls"
	"encoding/json"
	"github.com/pqedge/pqedge/internal/pages"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

const compatConfig = baseConfig + `
[[site]]
name = "local"
server_names = ["localhost", "127.0.0.1"]
[[site.route]]
path = "/"
handler = "inspect"
[[site.route]]
path = "/compat/"
handler = "compat"
[compat]
site = "local"
groups = ["X25519MLKEM768", "x25519"]
certs = ["ecdsa-p256", "ed25519", "mldsa44", "mldsa65", "mldsa87"]
`

// TestCompatListeners checks every combination listener: its one group, its
// one certificate, CORS for the compat page's origin only, and what the
// page reports the server saw.
func TestCompatListeners(t *testing.T) {
	var mu sync.Mutex
	var events []HandshakeEvent
	dir := t.TempDir()
	cfg := loadConfig(t, dir, compatConfig)
	srv, err := New(cfg, Options{Logger: testLogger(t), OnHandshake: func(ev HandshakeEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	page := "https://" + ts.addr("https") + "/compat/"
	origin := "https://localhost:" + strings.Split(ts.addr("https"), ":")[1]

	var rep pages.CompatReport
	getJSON(t, ts.client(), page+"?format=json", &rep)
	if len(rep.Combinations) != 10 {
		t.Fatalf("compat page lists %d combinations, want 10: %+v", len(rep.Combinations), rep.Combinations)
	}
	sigs := map[string]string{"ecdsa-p256": "ecdsa_secp256r1_sha256", "ed25519": "ed25519", "mldsa44": "mldsa44", "mldsa65": "mldsa65", "mldsa87": "mldsa87"}
	for _, c := range rep.Combinations {
		t.Run(c.Group+"/"+c.Cert, func(t *testing.T) {
			if c.Port == 0 {
				t.Fatal("no port")
			}
			group, _ := pqtls.ParseGroup(c.Group)
			url := "https://localhost:" + strconv.Itoa(c.Port) + "/?format=json"
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Origin", origin)
			resp, err := ts.client(group).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != origin {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, origin)
			}
			var ir pages.InspectReport
			if err := json.NewDecoder(resp.Body).Decode(&ir); err != nil {
				t.Fatal(err)
			}
			if ir.Group != c.Group || ir.Signature != sigs[c.Cert] {
				t.Errorf("negotiated %s/%s, want %s/%s", ir.Group, ir.Signature, c.Group, sigs[c.Cert])
			}
			// Another site's page may not read the JSON.
			req, _ = http.NewRequest("GET", url, nil)
			req.Header.Set("Origin", "https://evil.example")
			resp2, err := ts.client(group).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp2.Body.Close()
			if got := resp2.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("foreign origin allowed: %q", got)
			}
			// A client offering only the other group fails the handshake.
			other := tls.X25519
			if group == tls.X25519 {
				other = tls.X25519MLKEM768
			}
			if _, err := ts.client(other).Get(url); err == nil {
				t.Errorf("a client offering only %v got through a %s listener", other, c.Group)
			}
		})
	}

	getJSON(t, ts.client(), page+"?format=json&seen="+strconv.FormatInt(rep.Since, 10), &rep)
	for _, c := range rep.Combinations {
		// The last handshake on each listener was the refused client: it
		// did not offer the group, and it did offer the certificate's
		// signature (Go offers every scheme pqedge signs with).
		if c.Seen == nil || c.Seen.OK || c.Seen.Reason != "no_common_group" || c.Seen.OfferedGroup || !c.Seen.OfferedSignature {
			t.Errorf("%s: seen %+v, want the failed handshake (no_common_group, group not offered, signature offered)", c.Listener, c.Seen)
		}
	}
	mu.Lock()
	var compat, plain int
	for _, ev := range events {
		if ev.Compat {
			compat++
		} else {
			plain++
		}
	}
	// Three handshakes per combination (allowed, foreign origin, refused);
	// the page itself twice.
	mu.Unlock()
	if compat != 30 || plain != 2 {
		t.Errorf("OnHandshake saw %d compat and %d other handshakes, want 30 and 2", compat, plain)
	}
	if w := srv.adoption.Report(time.Now()).Windows[0]; w.Total != 2 {
		t.Errorf("adoption counted %d handshakes, want only the 2 outside the compat listeners", w.Total)
	}
	// A client that offers everything but does not trust the local CA: the
	// page can say "offered, then rejected the certificate".
	ml := rep.Combinations[slices.IndexFunc(rep.Combinations, func(c pages.CompatEntry) bool { return c.Cert == "mldsa65" && c.Group == "X25519MLKEM768" })]
	since := time.Now().UnixMilli()
	if c, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(ml.Port), &tls.Config{ServerName: "localhost"}); err == nil {
		c.Close()
		t.Fatal("a client without the local CA accepted its certificate")
	}
	waitFor(t, "the rejected handshake on the compat page", func() bool {
		var again pages.CompatReport
		getJSON(t, ts.client(), page+"?format=json&seen="+strconv.FormatInt(since, 10), &again)
		for _, c := range again.Combinations {
			if c.Listener == ml.Listener && c.Seen != nil {
				if c.Seen.OK || c.Seen.Reason != "certificate" || !c.Seen.OfferedGroup || !c.Seen.OfferedSignature {
					t.Errorf("rejected certificate seen as %+v", c.Seen)
				}
				return true
			}
		}
		return false
	})
}

// TestCompatPageHTML checks the page lists every combination with its port.
func TestCompatPageHTML(t *testing.T) {
	ts := startServer(t, compatConfig)
	resp, err := ts.client().Get("https://" + ts.addr("https") + "/compat/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	if _, err := io.Copy(&body, resp.Body); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"compat-X25519MLKEM768-mldsa65", "compat-x25519-ecdsa-p256"} {
		a := ts.srv.ListenerAddr(name)
		if a == nil {
			t.Fatalf("no listener %s", name)
		}
		want := `data-port="` + a.String()[strings.LastIndexByte(a.String(), ':')+1:] + `" data-listener="` + name + `"`
		if !strings.Contains(body.String(), want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

func getJSON(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: bad JSON: %v", url, err)
	}
}

// TestCompatUsesTheSiteSigner: the combination listeners' ML-DSA leaves sign
// with the signer the site chose, like the site's own chain.
func TestCompatUsesTheSiteSigner(t *testing.T) {
	for _, tt := range []struct {
		signer     string
		wantStdlib bool
	}{{"circl", false}, {"stdlib", true}} {
		t.Run(tt.signer, func(t *testing.T) {
			ts := startServer(t, strings.Replace(compatConfig, "server_names = [\"localhost\", \"127.0.0.1\"]",
				"server_names = [\"localhost\", \"127.0.0.1\"]\n[site.tls]\nmldsa_signer = \""+tt.signer+"\"", 1))
			checked := 0
			for _, l := range ts.srv.current.Load().listeners {
				if l.combo == nil || !l.Compat.PQCert {
					continue
				}
				key := l.combo.certs.selector().PQ.PrivateKey
				if _, isStdlib := key.(*mldsa.PrivateKey); isStdlib != tt.wantStdlib {
					t.Errorf("%s signs with %T", l.Name, key)
				}
				checked++
			}
			if checked == 0 {
				t.Fatal("no ML-DSA combination listener")
			}
		})
	}
}
