package config

import (
	"crypto"
	"crypto/mldsa"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// filesConfig names good and broken files; its "# want:" lines are the
// problems CheckFiles must report, "# warn:" lines the warnings. Paths are
// relative to the config, as operators write them.
const filesConfig = `
[[listener]]
name = "https"
address = "127.0.0.1:0"

[[site]]
name = "good"
server_names = ["www.example.com"]
certs = "files"
pq_certs = "trusted"
pq_root = "ca/root.crt"
[[site.cert]]
cert = "ecdsa.crt"
key = "ecdsa.key"
[[site.cert]]
cert = "mldsa.crt"
key = "mldsa.key"
[[site.route]]
path = "/"
handler = "inspect"

[[site]]
name = "broken"
server_names = ["other.example.com"]
certs = "files"
pq_root = "missing-root.crt"
[[site.cert]]
cert = "ecdsa.crt"
key = "ecdsa.key"
[[site.cert]]
cert = "mldsa.crt"
key = "missing.key"
[[site.cert]]
cert = "expired.crt"
key = "expired.key"
[[site.route]]
path = "/"
handler = "inspect"

[[site]]
name = "acme"
server_names = ["acme.example.com"]
certs = "acme"
[site.acme]
email = "ops@example.com"
ca_roots = "ecdsa.key"
[[site.cert]]
cert = "ecdsa.crt"
key = "ecdsa.key"
[[site.route]]
path = "/"
handler = "inspect"

[[site]]
name = "ageing"
server_names = ["old.example.com"]
certs = "files"
[[site.cert]]
cert = "ageing.crt"
key = "ageing.key"
[[site.route]]
path = "/"
handler = "inspect"

# want: 28: site[1].cert[0].cert: does not cover "other.example.com"
# want: 32: site[1].cert[1].key: failed to read private key
# want: 34: site[1].cert[2].cert: expired on
# want: 26: site[1].pq_root: failed to read
# want: 46: site[2].acme.ca_roots: no CERTIFICATE PEM block found, but a private key is
# want: 48: site[2].cert[0].cert: this pair is the site's ML-DSA chain
# warn: 59: site[3].cert[0].cert: expires on
`

func TestCheckFiles(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgMLDSA44, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct {
		name     string
		alg      certs.Alg
		at       time.Time
		validity time.Duration
	}{
		{"ecdsa", certs.AlgECDSAP256, now, 90 * 24 * time.Hour},
		{"mldsa", certs.AlgMLDSA44, now, 90 * 24 * time.Hour},
		{"expired", certs.AlgECDSAP256, now.Add(-60 * 24 * time.Hour), 30 * 24 * time.Hour},
		{"ageing", certs.AlgECDSAP256, now, 3 * 24 * time.Hour},
	} {
		leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"www.example.com", "acme.example.com", "old.example.com"}, Alg: l.alg, Now: l.at, Validity: l.validity})
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteKeyPair(filepath.Join(dir, l.name), leaf); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "pqedge.toml")
	if err := os.WriteFile(file, []byte(filesConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatalf("the config itself is valid, got:\n%v", err)
	}
	got := CheckFiles(cfg, now)

	var wants []Problem
	for i, line := range strings.Split(filesConfig, "\n") {
		kind, rest, ok := strings.Cut(line, ": ")
		if !ok || (kind != "# want" && kind != "# warn") {
			continue
		}
		num, text, _ := strings.Cut(rest, ": ")
		n, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("line %d: bad want %q", i+1, line)
		}
		wants = append(wants, Problem{Line: n, Msg: text, Warning: kind == "# warn"})
	}
	if len(got) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(wants), got)
	}
	for i, w := range wants {
		p := got[i]
		prefix := file + ":" + strconv.Itoa(w.Line) + ": "
		if w.Warning {
			prefix += "warning: "
		}
		key, text, _ := strings.Cut(w.Msg, ": ")
		if p.Warning != w.Warning || !strings.HasPrefix(p.String(), prefix) || displayKey(p.Key) != key || !strings.Contains(p.Msg, text) {
			t.Errorf("problem %d = %q, want %q...%q", i, p.String(), prefix, w.Msg)
		}
	}
	// A missing file's problem says where relative paths start.
	if !strings.Contains(got[3].Hint, "relative to the config file's directory") {
		t.Errorf("missing pq_root: hint %q", got[0].Hint)
	}
}

// poolTLSConfig names a pool's origin TLS files, good and broken; its
// "# want:" and "# warn:" lines are what CheckFiles must report.
const poolTLSConfig = `
[[listener]]
name = "https"
address = "127.0.0.1:0"

[[site]]
name = "www"
server_names = ["www.example.com"]
[[site.route]]
path = "/"
pool = "good"

[[pool]]
name = "good"
upstreams = ["https://origin.example.com"]
tls_ca = "ca/root.crt"
tls_client_cert = "mldsa.crt"
tls_client_key = "mldsa.key"
pq_required = true

[[pool]]
name = "broken"
upstreams = ["https://origin.example.com:8443"]
tls_ca = "missing-ca.crt"
tls_client_cert = "ecdsa.crt"
tls_client_key = "mldsa.key"

[[pool]]
name = "expired"
upstreams = ["https://origin.example.com"]
tls_ca = "ecdsa.key"
tls_client_cert = "expired.crt"
tls_client_key = "expired.key"

# warn: 17: pool[0].tls_client_cert: is not for client authentication
# want: 24: pool[1].tls_ca: failed to read
# want: 26: pool[1].tls_client_key: does not match
# want: 31: pool[2].tls_ca: no CERTIFICATE PEM block found, but a private key is
# want: 32: pool[2].tls_client_cert: expired on
`

// TestCheckFilesPoolTLS: CheckFiles reads each pool's tls_ca and client
// pair through PoolTLS, at the lines of the keys; PoolTLS gives the server
// the roots, and an ML-DSA client key wrapped in the circl signer.
func TestCheckFilesPoolTLS(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgECDSAP384, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct {
		name string
		alg  certs.Alg
		at   time.Time
	}{
		{"ecdsa", certs.AlgECDSAP256, now}, {"mldsa", certs.AlgMLDSA44, now}, {"expired", certs.AlgECDSAP256, now.Add(-120 * 24 * time.Hour)},
	} {
		leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"pqedge-client"}, Alg: l.alg, Now: l.at, Validity: 30 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteKeyPair(filepath.Join(dir, l.name), leaf); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "pqedge.toml")
	if err := os.WriteFile(file, []byte(poolTLSConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatalf("the config itself is valid, got:\n%v", err)
	}
	got := CheckFiles(cfg, now)
	var wants []string
	for _, line := range strings.Split(poolTLSConfig, "\n") {
		if strings.HasPrefix(line, "# want: ") || strings.HasPrefix(line, "# warn: ") {
			wants = append(wants, line)
		}
	}
	if len(got) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(wants), got)
	}
	for i, w := range wants {
		kind, rest, _ := strings.Cut(w[2:], ": ")
		num, rest, _ := strings.Cut(rest, ": ")
		key, text, _ := strings.Cut(rest, ": ")
		prefix := file + ":" + num + ": "
		if kind == "warn" {
			prefix += "warning: "
		}
		p := got[i]
		if !strings.HasPrefix(p.String(), prefix) || displayKey(p.Key) != key || !strings.Contains(p.Msg, text) || p.Warning != (kind == "warn") {
			t.Errorf("problem %d = %q, want %q...%s: ...%s", i, p.String(), prefix, key, text)
		}
	}

	settings, _, err := PoolTLS(cfg.Pool[0], now)
	if err != nil {
		t.Fatal(err)
	}
	if len(settings.RootCAs) != 1 || !settings.RootCAs[0].Equal(ca.Root) || !settings.PQRequired || settings.ServerName != "" {
		t.Errorf("PoolTLS settings: %d roots, pq_required %v, server name %q", len(settings.RootCAs), settings.PQRequired, settings.ServerName)
	}
	c := settings.Certificate
	if c == nil {
		t.Fatal("no client certificate")
	}
	if _, std := c.PrivateKey.(*mldsa.PrivateKey); std {
		t.Error("the ML-DSA client key signs with crypto/mldsa, want the default (circl) signer")
	}
	if _, ok := c.PrivateKey.(crypto.Signer).Public().(*mldsa.PublicKey); !ok {
		t.Errorf("client key %T does not present an ML-DSA public key", c.PrivateKey)
	}
}
