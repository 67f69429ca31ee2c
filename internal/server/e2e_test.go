package server

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

const baseConfig = `
data_dir = "{{DATA}}/data"
[admin]
listen = "127.0.0.1:0"
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:0"
`

// TestGroupsEndToEnd forces each group from a Go client and checks it in the
// inspect JSON, in the headers the upstream received, and in the metrics.
func TestGroupsEndToEnd(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	}))
	defer upstream.Close()
	ts := startServer(t, baseConfig+inspectSite+`[[site.route]]
path = "/app/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["`+strings.TrimPrefix(upstream.URL, "http://")+`"]
`)
	base := "https://" + ts.addr("https")
	tests := []struct {
		group tls.CurveID
		name  string
		pq    bool
	}{
		{tls.X25519MLKEM768, "X25519MLKEM768", true},
		{tls.SecP256r1MLKEM768, "SecP256r1MLKEM768", true},
		{tls.SecP384r1MLKEM1024, "SecP384r1MLKEM1024", true},
		{tls.X25519, "x25519", false},
		{tls.CurveP256, "secp256r1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.client(tt.group)
			rep := inspect(t, c, base+"/")
			if rep.Group != tt.name || rep.PQ != tt.pq {
				t.Errorf("inspect says group %q pq %v, want %q %v", rep.Group, rep.PQ, tt.name, tt.pq)
			}
			if rep.Version != "TLS 1.3" || rep.ALPN != "h2" || rep.Signature != "ecdsa_secp256r1_sha256" {
				t.Errorf("inspect says version %q alpn %q signature %q", rep.Version, rep.ALPN, rep.Signature)
			}
			if rep.Client == nil || len(rep.Client.Groups) == 0 || rep.Client.Groups[0] != tt.name {
				t.Errorf("inspect's client.groups = %+v, want [%s]", rep.Client, tt.name)
			}
			wantVerdict := map[bool]string{true: "protected", false: "not protected"}[tt.pq]
			if rep.Verdict != wantVerdict {
				t.Errorf("verdict %q, want %q", rep.Verdict, wantVerdict)
			}

			resp, err := c.Get(base + "/app/x")
			if err != nil {
				t.Fatal(err)
			}
			var hdr http.Header
			json.NewDecoder(resp.Body).Decode(&hdr)
			resp.Body.Close()
			if got := hdr.Get("Pqedge-Tls-Group"); got != tt.name {
				t.Errorf("upstream saw PQEdge-TLS-Group %q, want %q", got, tt.name)
			}
			if got := hdr.Get("Pqedge-Tls-Pq"); got != map[bool]string{true: "true", false: "false"}[tt.pq] {
				t.Errorf("upstream saw PQEdge-TLS-PQ %q", got)
			}
			if hdr.Get("X-Forwarded-For") == "" || hdr.Get("X-Forwarded-Proto") != "https" {
				t.Errorf("upstream missed X-Forwarded-*: %v", hdr)
			}
		})
	}
	if got := ts.metric(`pqedge_handshakes_total{family="go",group="X25519MLKEM768",hello_retry="false",listener="https",pq="true"`); got == "" || got == "0" {
		t.Errorf("no X25519MLKEM768 handshake counted in /metrics (got %q)", got)
	}
}

func TestPQOnlyRefusesClassicalClients(t *testing.T) {
	ts := startServer(t, baseConfig+pqOnlyInspectSite)
	base := "https://" + ts.addr("https")
	if _, err := ts.client(tls.X25519, tls.CurveP256).Get(base + "/"); err == nil {
		t.Fatal("a classical-only client completed a handshake with a pq-only site")
	}
	rep := inspect(t, ts.client(tls.X25519MLKEM768, tls.X25519), base+"/")
	if rep.Group != "X25519MLKEM768" {
		t.Errorf("pq client got %q", rep.Group)
	}
	waitFor(t, "the refusal in /metrics", func() bool {
		return ts.metric(`pqedge_handshake_failures_total{family="go",listener="https",reason="no_common_group",transport="tcp"}`) == "1"
	})
}

// TestMLDSAChainOnlyWhenAllowed: the Go client offers ML-DSA first; it gets
// the ML-DSA chain under pq_certs = "always" and the classical one otherwise
// TestMLDSAChainOnlyWhenAllowed: the ML-DSA chain goes only to clients the
// site's pq_certs (and pq_rule) allow, and only if the client can verify
// every signature in it (RFC 8446 section 4.4.2.2): the lean client offers
// the local chain's ML-DSA schemes in signature_algorithms and sends no
// signature_algorithms_cert, so it can; a Go 1.27 client leaves ML-DSA out
// of signature_algorithms_cert (go.dev/issue/82536), so it gets the
// classical chain even under "always".
func TestMLDSAChainOnlyWhenAllowed(t *testing.T) {
	for _, tt := range []struct {
		name, mode, rule string
		wantSig          tls.SignatureScheme
	}{
		{"off", "off", "", tls.ECDSAWithP256AndSHA256},
		{"trusted", "trusted", "", tls.ECDSAWithP256AndSHA256},
		{"always", "always", "", tls.MLDSA65},
		{"trusted with a rule for this network", "trusted", "127.0.0.0/8", tls.MLDSA65},
		{"always with an off rule elsewhere", "always", "10.0.0.0/8", tls.MLDSA65},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rule := ""
			if tt.rule != "" {
				mode := "always"
				if tt.mode == "always" {
					mode = "off"
				}
				rule = "[[site.pq_rule]]\nnetwork = \"" + tt.rule + "\"\nmode = \"" + mode + "\"\n"
			}
			ts := startServer(t, baseConfig+inspectSiteWith(`pq_certs = "`+tt.mode+`"`+"\n"+rule))
			res, err := leanclient.Dial(t.Context(), ts.addr("https"), &leanclient.Config{ServerName: "localhost", Groups: []tls.CurveID{tls.X25519MLKEM768},
				SignatureAlgorithms: []tls.SignatureScheme{tls.MLDSA65, tls.MLDSA87, tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384},
				Timeout:             5 * time.Second})
			if err != nil {
				t.Fatalf("handshake failed: %v", err)
			}
			if res.SignatureScheme != tt.wantSig {
				t.Errorf("signed with %s under pq_certs=%s, want %s", pqtls.SignatureName(res.SignatureScheme), tt.mode, pqtls.SignatureName(tt.wantSig))
			}
			// A Go client gets the classical chain whatever the mode.
			conn, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
			if err != nil {
				t.Fatalf("Go client: %v", err)
			}
			defer conn.Close()
			if leaf := conn.ConnectionState().PeerCertificates[0]; pqtls.KeyAlgorithm(leaf.PublicKey) != "ECDSA P-256" {
				t.Errorf("a Go 1.27 client got a %s leaf it cannot verify the chain of", pqtls.KeyAlgorithm(leaf.PublicKey))
			}
		})
	}
}

// TestTwoListenersOnFreePorts: port 0 means a free port per listener, so two
// listeners on 127.0.0.1:0 get two sockets, both serving, also after reload.
func TestTwoListenersOnFreePorts(t *testing.T) {
	cfg := baseConfig + `
[[listener]]
name = "second"
address = "127.0.0.1:0"
` + inspectSite
	ts := startServer(t, cfg)
	check := func() {
		t.Helper()
		a, b := ts.addr("https"), ts.addr("second")
		if a == b {
			t.Fatalf("both listeners got %s", a)
		}
		for _, addr := range []string{a, b} {
			if rep := inspect(t, ts.client(tls.X25519MLKEM768), "https://"+addr+"/"); rep.Group != "X25519MLKEM768" {
				t.Errorf("%s served %q", addr, rep.Group)
			}
		}
	}
	check()
	before := ts.addr("second")
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, cfg)); err != nil {
		t.Fatal(err)
	}
	check()
	if ts.addr("second") != before {
		t.Error("a reload with the same config moved a port-0 listener to a new socket")
	}
}
