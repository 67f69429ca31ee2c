package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/internal/peers"
)

// TestOriginTLSAgainstNginx: nginx 1.26 with OpenSSL 3.5 (the trixie root)
// as the origin, one server per group set. Each side reports the group it
// negotiated: pqedge in RequestInfo, nginx in $ssl_curve (it prints
// X25519MLKEM768 by codepoint, 0x11ec). pq_required refuses the classical
// and the TLS 1.2 origins with the reason, and a CA that did not sign the
// origin's certificate fails verification.
func TestOriginTLSAgainstNginx(t *testing.T) {
	root := peers.Trixie(t)
	host, inside := root.TempDir(t)
	pki := newTestPKI(t, "origin CA")
	writeKeyPair(t, host, "origin", pki.issue(t, "origin.test", certs.AlgECDSAP256, x509.ExtKeyUsageServerAuth))
	servers := []struct {
		name, curves, protocols string
	}{
		{"hybrid", "X25519MLKEM768:SecP256r1MLKEM768:x25519", "TLSv1.2 TLSv1.3"},
		{"classical", "x25519:prime256v1", "TLSv1.2 TLSv1.3"},
		{"tls12", "x25519:prime256v1", "TLSv1.2"},
	}
	addrs := map[string]string{}
	var blocks strings.Builder
	for _, s := range servers {
		addrs[s.name] = freeport.MustAddr(t)
		fmt.Fprintf(&blocks, `	server {
		listen %s ssl;
		ssl_certificate %s/origin.crt;
		ssl_certificate_key %s/origin.key;
		ssl_ecdh_curve %s;
		ssl_protocols %s;
		location / {
			default_type text/plain;
			return 200 "curve=$ssl_curve sni=$ssl_server_name proto=$ssl_protocol";
		}
	}
`, addrs[s.name], inside, inside, s.curves, s.protocols)
	}
	startNginx(t, root, host, inside, blocks.String(), addrs["hybrid"])

	trust := []*x509.Certificate{pki.root}
	tests := []struct {
		name       string
		origin     string
		tls        UpstreamTLS
		wantGroup  string // pqedge's record
		wantBody   string // nginx's record
		wantReason string // for a refused handshake
	}{
		{name: "hybrid", origin: "hybrid", tls: UpstreamTLS{RootCAs: trust, ServerName: "origin.test"},
			wantGroup: "X25519MLKEM768", wantBody: "curve=0x11ec sni=origin.test proto=TLSv1.3"},
		{name: "hybrid, pq_required", origin: "hybrid", tls: UpstreamTLS{RootCAs: trust, ServerName: "origin.test", PQRequired: true},
			wantGroup: "X25519MLKEM768", wantBody: "curve=0x11ec sni=origin.test proto=TLSv1.3"},
		{name: "classical", origin: "classical", tls: UpstreamTLS{RootCAs: trust, ServerName: "origin.test"},
			wantGroup: "x25519", wantBody: "curve=X25519 sni=origin.test proto=TLSv1.3"},
		{name: "classical, pq_required", origin: "classical", tls: UpstreamTLS{RootCAs: trust, ServerName: "origin.test", PQRequired: true},
			wantReason: TLSFailureNoCommonGroup},
		{name: "TLS 1.2 only, pq_required", origin: "tls12", tls: UpstreamTLS{RootCAs: trust, ServerName: "origin.test", PQRequired: true},
			wantReason: TLSFailureVersion},
		{name: "unknown CA", origin: "hybrid", tls: UpstreamTLS{RootCAs: []*x509.Certificate{newTestPKI(t, "other").root}, ServerName: "origin.test"},
			wantReason: TLSFailureCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newTestPool(t, PoolOptions{
				Addresses: []string{"https://" + addrs[tt.origin]}, TLS: tt.tls, MaxFails: 1, EjectFor: time.Hour,
				Health: HealthOptions{Interval: -1},
			})
			log := &logBuffer{}
			got := originProxy(t, pool, log)()
			if tt.wantReason != "" {
				if got.status != http.StatusBadGateway || !log.contains("upstream TLS handshake failed", "reason="+tt.wantReason) {
					t.Errorf("got %d %q, want 502 and reason %s logged:\n%s", got.status, got.body, tt.wantReason, log)
				}
				if !pool.Upstreams()[0].Ejected {
					t.Error("the refused origin was not ejected")
				}
				return
			}
			if got.status != http.StatusOK || got.body != tt.wantBody {
				t.Errorf("got %d %q, want 200 %q", got.status, got.body, tt.wantBody)
			}
			if f := got.info.UpstreamTLS; f == nil || f.Group != tt.wantGroup {
				t.Errorf("pqedge recorded %+v, want group %s", f, tt.wantGroup)
			}
		})
	}
}

// TestOriginMLDSAClientCertificate: an `openssl s_server -Verify` origin
// (OpenSSL 3.5, hybrid groups only) requires a client certificate and
// verifies an ML-DSA-44 one that OpenSSL itself issued, whose key
// certs.LoadKeyPair reads in OpenSSL's encoding and the circl signer signs
// with; its status page names the certificate it verified and the
// signature the client made.
func TestOriginMLDSAClientCertificate(t *testing.T) {
	root := peers.Trixie(t)
	host, inside := root.TempDir(t)
	pki := newTestPKI(t, "origin CA")
	writeKeyPair(t, host, "origin", pki.issue(t, "origin.test", certs.AlgECDSAP256, x509.ExtKeyUsageServerAuth))
	openssl := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := root.Command(ctx, "openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	os.WriteFile(filepath.Join(host, "client.ext"), []byte("extendedKeyUsage=clientAuth\n"), 0o644)
	openssl("req", "-x509", "-newkey", "mldsa65", "-nodes", "-keyout", inside+"/ca.key", "-out", inside+"/ca.crt", "-subj", "/CN=client CA", "-days", "1")
	openssl("req", "-newkey", "mldsa44", "-nodes", "-keyout", inside+"/client.key", "-out", inside+"/client.csr", "-subj", "/CN=pqedge-client")
	openssl("x509", "-req", "-in", inside+"/client.csr", "-CA", inside+"/ca.crt", "-CAkey", inside+"/ca.key",
		"-out", inside+"/client.crt", "-days", "1", "-extfile", inside+"/client.ext")
	client, err := certs.LoadKeyPair(filepath.Join(host, "client.crt"), filepath.Join(host, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WrapSigner(client, certs.SignerCircl); err != nil {
		t.Fatal(err)
	}

	addr := freeport.MustAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := root.Command(ctx, "openssl", "s_server", "-accept", addr, "-cert", inside+"/origin.crt", "-key", inside+"/origin.key",
		"-groups", "X25519MLKEM768:SecP256r1MLKEM768", "-Verify", "1", "-CAfile", inside+"/ca.crt", "-www", "-quiet")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("s_server output:\n%s", out)
		}
	})
	waitListening(t, "s_server", addr)

	for _, tt := range []struct {
		name     string
		cert     bool
		wantBody []string
	}{
		{"with the ML-DSA certificate", true, []string{"Peer signature type: mldsa44", "Subject: CN=pqedge-client", "Verify return code: 0 (ok)"}},
		{"without", false, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := UpstreamTLS{RootCAs: []*x509.Certificate{pki.root}, ServerName: "origin.test", PQRequired: true}
			if tt.cert {
				opts.Certificate = client
			}
			pool := newTestPool(t, PoolOptions{Addresses: []string{"https://" + addr}, TLS: opts, Health: HealthOptions{Interval: -1}})
			log := &logBuffer{}
			got := originProxy(t, pool, log)()
			if tt.wantBody == nil {
				if got.status != http.StatusBadGateway || !log.contains("upstream TLS handshake failed", "reason="+TLSFailureClientCertificate) {
					t.Errorf("got %d %q, want 502 and a client_certificate failure logged:\n%s", got.status, got.body, log)
				}
				return
			}
			for _, want := range tt.wantBody {
				if got.status != http.StatusOK || !strings.Contains(got.body, want) {
					t.Errorf("got %d, want 200 with %q; the origin's page begins:\n%.3000s", got.status, want, got.body)
				}
			}
			if f := got.info.UpstreamTLS; f == nil || f.Group != "X25519MLKEM768" {
				t.Errorf("pqedge recorded %+v, want X25519MLKEM768", f)
			}
		})
	}
}

// writeKeyPair writes cert's chain and key as NAME.crt and NAME.key.
func writeKeyPair(t *testing.T, dir, name string, c *tls.Certificate) {
	t.Helper()
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startNginx runs nginx in root with servers (server blocks) until the
// test ends, and waits until addr accepts connections.
func startNginx(t *testing.T, root *peers.Chroot, host, inside, servers, addr string) {
	t.Helper()
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events {}
http {
	access_log off;
	client_body_temp_path %[1]s;
	proxy_temp_path %[1]s;
	fastcgi_temp_path %[1]s;
	uwsgi_temp_path %[1]s;
	scgi_temp_path %[1]s;
%[2]s}
`, inside, servers)
	if err := os.WriteFile(filepath.Join(host, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := root.Command(ctx, "nginx", "-c", inside+"/nginx.conf")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(host, "error.log"))
			t.Logf("nginx output: %s\nerror.log: %s", out, log)
		}
	})
	waitListening(t, "nginx", addr)
}

// waitListening polls until addr accepts TCP connections.
func waitListening(t *testing.T, what, addr string) {
	t.Helper()
	waitFor(t, what+" to listen on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
