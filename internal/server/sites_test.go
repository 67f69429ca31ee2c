package server

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// siteUpstream answers every request with its site's name and counts them.
func siteUpstream(t *testing.T, name string, hits *atomic.Int64) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestHostAndSNIResolution drives requests whose TLS server name and Host
// differ through one listener: the Host's site serves when this connection
// qualifies for it (its certificate covers the name, its key exchange meets
// that site's policy), and 421 answers otherwise, with nothing sent
// upstream. Sites resolve the same way for SNI and Host: exact, wildcard,
// then the default.
func TestHostAndSNIResolution(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"files.test"}, Alg: certs.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKeyPair(filepath.Join(dir, "files"), leaf); err != nil {
		t.Fatal(err)
	}
	hits := map[string]*atomic.Int64{}
	ups := map[string]string{}
	for _, n := range []string{"pref", "only", "wild", "files"} {
		hits[n] = new(atomic.Int64)
		ups[n] = siteUpstream(t, n, hits[n])
	}
	site := func(name, names, extra string) string {
		return `
[[site]]
name = "` + name + `"
server_names = [` + names + `]
` + extra + `
[[site.route]]
path = "/"
pool = "` + name + `"
[[pool]]
name = "` + name + `"
upstreams = ["` + ups[name] + `"]
`
	}
	ts := startServer(t, baseConfig+`
[[listener]]
name = "strict"
address = "127.0.0.1:0"
strict_sni = true
`+site("pref", `"pref.test", "*.wild-pref.test"`, "")+
		site("only", `"only.test"`, "[site.tls]\npolicy = \"pq-only\"")+
		site("wild", `"*.wild.test"`, "")+
		site("files", `"files.test"`, "certs = \"files\"\n[[site.cert]]\ncert = \""+dir+"/files.crt\"\nkey = \""+dir+"/files.key\""))

	roots := ts.roots()
	roots.AddCert(ca.Root)
	hybrid, classical := []tls.CurveID{tls.X25519MLKEM768}, []tls.CurveID{tls.X25519}
	tests := []struct {
		name      string
		sni, host string
		groups    []tls.CurveID
		status    int
		site      string // the site whose upstream answered; "" for none
		strict    bool   // over the strict_sni listener
	}{
		{"exact", "pref.test", "pref.test", hybrid, 200, "pref", false},
		{"wildcard", "a.wild.test", "a.wild.test", hybrid, 200, "wild", false},
		{"wildcard of the first site", "b.wild-pref.test", "b.wild-pref.test", classical, 200, "pref", false},
		{"unknown name gets the default", "nothing.test", "nothing.test", classical, 200, "pref", false},
		{"Host with a port", "pref.test", "pref.test:8443", hybrid, 200, "pref", false},
		{"Host naming no site stays on the handshake's", "only.test", "nothing.test", hybrid, 200, "only", false},
		{"coalesced onto a wildcard site", "pref.test", "x.wild.test", hybrid, 200, "wild", false},
		{"coalesced onto pq-only with a hybrid handshake", "pref.test", "only.test", hybrid, 200, "only", false},
		{"classical handshake cannot switch to pq-only", "pref.test", "only.test", classical, 421, "", false},
		{"pq-only handshake may switch to pq-preferred", "only.test", "pref.test", hybrid, 200, "pref", false},
		{"certificate does not cover the Host", "files.test", "pref.test", hybrid, 421, "", false},
		{"Host another certificate covers", "pref.test", "files.test", hybrid, 421, "", false},
		{"Host in upper case, a trailing dot and a port", "pref.test", "ONLY.Test.:443", classical, 421, "", false},
		{"strict: Host naming no site", "pref.test", "nothing.test", hybrid, 421, "", true},
		{"strict: Host naming no site, with a port and a trailing dot", "pref.test", "Nothing.Test.:8443", hybrid, 421, "", true},
		{"strict: Host naming no site on a connection without SNI", "", "nothing.test", hybrid, 421, "", true},
		{"strict: Host naming a site in mixed case with a trailing dot", "pref.test", "Pref.TEST.", hybrid, 200, "pref", true},
		{"strict: Host by wildcard", "pref.test", "z.WILD.test", hybrid, 200, "wild", true},
		{"strict: Host an IPv4 address", "pref.test", "127.0.0.1", hybrid, 200, "pref", true},
		{"strict: Host an IPv6 address", "", "[::1]:443", hybrid, 200, "pref", true},
		{"strict: classical handshake cannot switch to pq-only in any spelling", "pref.test", "ONLY.TEST.", classical, 421, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string]int64{}
			for n, h := range hits {
				before[n] = h.Load()
			}
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				// A name no site serves gets the default site's
				// certificate, which the client cannot verify for it.
				// Without SNI (connecting by address) it is the default
				// site's, which does not name the address.
				TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: tt.sni, CurvePreferences: tt.groups, InsecureSkipVerify: tt.sni == "nothing.test" || tt.sni == ""},
				ForceAttemptHTTP2: true,
			}}
			defer c.CloseIdleConnections()
			listener := "https"
			if tt.strict {
				listener = "strict"
			}
			req, _ := http.NewRequest("GET", "https://"+ts.addr(listener)+"/", nil)
			req.Host = tt.host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tt.status)
			}
			for n, h := range hits {
				want := before[n]
				if n == tt.site {
					want++
				}
				if got := h.Load(); got != want {
					t.Errorf("upstream of site %q got %d requests, want %d", n, got-before[n], want-before[n])
				}
			}
			if tt.site != "" && string(body) != tt.site {
				t.Errorf("answered by %q, want %q", body, tt.site)
			}
		})
	}
	if got := ts.metric(`pqedge_misdirected_requests_total{reason="policy",site="pref"}`); got != "3" {
		t.Errorf("misdirected (policy) counted %q, want 3", got)
	}
	if got := ts.metric(`pqedge_misdirected_requests_total{reason="unknown_name",site="pref"}`); got != "3" {
		t.Errorf("misdirected (unknown_name) counted %q, want 3", got)
	}
	if got := ts.metric(`pqedge_misdirected_requests_total{reason="certificate",site="files"}`); got != "1" {
		t.Errorf("misdirected (certificate) counted %q, want 1", got)
	}

	// One HTTP/2 connection made for pref.test carries requests for a site
	// matched by wildcard, as a browser coalescing connections does.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "pref.test"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	var conns atomic.Int64
	for _, host := range []string{"pref.test", "y.wild.test", "pref.test"} {
		req, _ := http.NewRequest("GET", "https://"+ts.addr("https")+"/", nil)
		req.Host = host
		req = req.WithContext(httptraceConns(req.Context(), &conns))
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := map[string]string{"pref.test": "pref", "y.wild.test": "wild"}[host]
		if resp.ProtoMajor != 2 || string(body) != want {
			t.Errorf("Host %s over %s answered by %q, want %q over HTTP/2", host, resp.Proto, body, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the coalesced requests used %d connections, want 1", n)
	}

	// strict_sni refuses a name no site serves, before any certificate.
	_, err = tls.Dial("tcp", ts.addr("strict"), &tls.Config{RootCAs: roots, ServerName: "nothing.test"})
	if err == nil {
		t.Fatal("a strict_sni listener served an unknown name")
	}
	// RFC 6066 section 3: the unrecognized_name alert (112), not
	// internal_error, which would blame the server.
	if !strings.Contains(err.Error(), "tls: unrecognized name") {
		t.Errorf("the client got %v, want the unrecognized_name alert", err)
	}
	waitFor(t, "the unknown_name failure", func() bool {
		return ts.metric(`pqedge_handshake_failures_total{family="go",listener="strict",reason="unknown_name",transport="tcp"}`) == "1"
	})
	c, err := tls.Dial("tcp", ts.addr("strict"), &tls.Config{RootCAs: roots, ServerName: "pref.test"})
	if err != nil {
		t.Fatalf("a strict_sni listener refused a known name: %v", err)
	}
	c.Close()
}

// httptraceConns counts the new (not reused) connections requests with the
// returned context get.
func httptraceConns(ctx context.Context, n *atomic.Int64) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			n.Add(1)
		}
	}})
}
