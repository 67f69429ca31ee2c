package plan

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/internal/config"
)

func mustPlan(t *testing.T, text string) *Plan {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "pqedge.toml"), []byte(text))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	p, err := Build(cfg)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return p
}

const twoSites = `
[[listener]]
name = "https"
address = "127.0.0.1:8443"
[[listener]]
name = "strict"
address = "127.0.0.1:8444"
strict_sni = true

[[site]]
name = "www"
server_names = ["www.example.com", "example.com"]
[[site.route]]
path = "/"
pool = "app"
[[site.route]]
path = "/api/"
pool = "api"
[[site.route]]
path = "/inspect"
handler = "inspect"

[[site]]
name = "wild"
server_names = ["*.example.org", "Exact.Example.Net"]
[[site.route]]
path = "/"
handler = "inspect"

[[pool]]
name = "app"
upstreams = ["127.0.0.1:3000"]
[[pool]]
name = "api"
upstreams = ["127.0.0.1:3001"]
`

func TestResolve(t *testing.T) {
	p := mustPlan(t, twoSites)
	tests := []struct {
		listener, name string
		site           string // "" for none
		match          Match
	}{
		{"https", "www.example.com", "www", MatchExact},
		{"https", "WWW.Example.COM.", "www", MatchExact},
		{"https", "exact.example.net", "wild", MatchExact},
		{"https", "a.example.org", "wild", MatchWildcard},
		{"https", "a.b.example.org", "www", MatchDefault}, // one label deep only
		{"https", "example.org", "www", MatchDefault},
		{"https", "unknown.test", "www", MatchDefault},
		{"https", "", "www", MatchDefault},
		{"strict", "unknown.test", "", MatchNone},
		{"strict", "a.example.org", "wild", MatchWildcard},
		{"strict", "", "www", MatchDefault}, // no SNI: the default even when strict
	}
	for _, tt := range tests {
		t.Run(tt.listener+"/"+tt.name, func(t *testing.T) {
			s, m := p.Listener(tt.listener).Resolver.Resolve(tt.name)
			got := ""
			if s != nil {
				got = s.Name
			}
			if got != tt.site || m != tt.match {
				t.Errorf("Resolve(%q) = %q, %d; want %q, %d", tt.name, got, m, tt.site, tt.match)
			}
		})
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"example.com": "example.com", "example.com:8443": "example.com", "[2001:db8::1]:443": "2001:db8::1",
		"[2001:db8::1]": "2001:db8::1", "2001:db8::1": "2001:db8::1", "127.0.0.1:80": "127.0.0.1", "": "",
	} {
		if got := HostName(in); got != want {
			t.Errorf("HostName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRoutesLongestPrefixFirst(t *testing.T) {
	p := mustPlan(t, twoSites)
	s := p.Site("www")
	for path, want := range map[string]string{"/api/v1": "api", "/apix": "app", "/inspect/x": "", "/": "app"} {
		r := s.Match(path)
		if r == nil || r.Pool != want {
			t.Errorf("Match(%q) = %+v, want pool %q", path, r, want)
		}
	}
}

func TestServesName(t *testing.T) {
	p := mustPlan(t, twoSites)
	s := p.Site("wild")
	for name, want := range map[string]bool{"x.example.org": true, "X.EXAMPLE.ORG.": true, "x.y.example.org": false, "example.org": false, "exact.example.net": true} {
		if got := s.ServesName(name); got != want {
			t.Errorf("ServesName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestBuildDoesNoIO plans a config whose certificate files and CA roots do
// not exist: planning must not look at them.
func TestBuildDoesNoIO(t *testing.T) {
	p := mustPlan(t, `
[[listener]]
name = "https"
address = "127.0.0.1:0"
[[site]]
name = "acme"
server_names = ["acme.example"]
certs = "acme"
[site.acme]
email = "ops@acme.example"
ca_roots = "/nonexistent/roots.pem"
http_port = 8080
[[site.cert]]
cert = "/nonexistent/pq.crt"
key = "/nonexistent/pq.key"
[[site.route]]
path = "/"
handler = "inspect"
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/compat"
handler = "compat"
[compat]
site = "local"
groups = ["X25519MLKEM768", "x25519"]
certs = ["ecdsa-p256", "mldsa44"]
`)
	if len(p.ACME) != 1 || p.ACME[0].Plain != "127.0.0.1:8080" || p.ACME[0].HTTPS != "127.0.0.1:0#https" {
		t.Errorf("ACME plan = %+v", p.ACME[0])
	}
	if p.Compat == nil || len(p.Compat.Combinations) != 4 {
		t.Fatalf("compat plan = %+v", p.Compat)
	}
	c := p.Compat.Combinations[1]
	if c.GroupName != "X25519MLKEM768" || string(c.Cert) != "mldsa44" || !c.PQGroup || !c.PQCert ||
		!strings.HasPrefix(c.Listener.SocketKey, "127.0.0.1:0#compat-") {
		t.Errorf("combination 1 = %+v (listener %+v)", c, c.Listener)
	}
	if got := len(p.SocketKeys()); got != 6 {
		t.Errorf("%d socket keys, want 6 (https, 4 compat, HTTP-01): %v", got, p.SocketKeys())
	}
}

// TestHTTP3SocketKeys: an https listener with http3 has a UDP socket key of
// its own, on the same address; its BindAddress is the TCP socket's.
func TestHTTP3SocketKeys(t *testing.T) {
	p := mustPlan(t, `
[[listener]]
name = "https"
address = "127.0.0.1:8443"
http3 = true
[[listener]]
name = "any"
address = "127.0.0.1:0"
http3 = true
[[listener]]
name = "tcp-only"
address = "127.0.0.1:8444"
[[site]]
name = "www"
server_names = ["www.example.com"]
[[site.route]]
path = "/"
handler = "inspect"
`)
	tests := []struct{ listener, quicKey, bind string }{
		{"https", "udp/127.0.0.1:8443", "127.0.0.1:8443"},
		{"any", "udp/127.0.0.1:0#any", "127.0.0.1:0"},
		{"tcp-only", "", ""},
	}
	for _, tt := range tests {
		l := p.Listener(tt.listener)
		if l.QUICKey != tt.quicKey {
			t.Errorf("listener %s: QUICKey %q, want %q", tt.listener, l.QUICKey, tt.quicKey)
		}
		if tt.quicKey != "" && BindAddress(l.QUICKey) != tt.bind {
			t.Errorf("listener %s: UDP binds %q, want %q", tt.listener, BindAddress(l.QUICKey), tt.bind)
		}
	}
	if got := strings.Join(p.SocketKeys(), " "); got != "127.0.0.1:8443 udp/127.0.0.1:8443 127.0.0.1:0#any udp/127.0.0.1:0#any 127.0.0.1:8444" {
		t.Errorf("socket keys %s", got)
	}
}
