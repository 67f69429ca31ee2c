package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pqedge/pqedge/bench"
	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/peers"
	"github.com/pqedge/pqedge/internal/server"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

func probeGroups(r *leanclient.ProbeReport) map[tls.CurveID]leanclient.GroupSupport {
	m := map[tls.CurveID]leanclient.GroupSupport{}
	for _, g := range r.Groups {
		m[g.Group] = g
	}
	return m
}

func probeCert(r *leanclient.ProbeReport, name string) leanclient.CertificateProbe {
	for _, c := range r.Certificates {
		if c.Name == name {
			return c
		}
	}
	return leanclient.CertificateProbe{}
}

// TestProbePQEdge probes a pqedge site under pq-only with pq_certs =
// "always": the three hybrids are accepted (directly and through HRR),
// classical groups are refused, the ECDSA and ML-DSA-65 chains are served
// for their signature lists, and split ClientHellos are survived.
func TestProbePQEdge(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pqedge.toml")
	os.WriteFile(file, []byte(`
data_dir = "data"
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:0"
[[site]]
name = "local"
server_names = ["localhost"]
pq_certs = "always"
[site.tls]
policy = "pq-only"
[[site.route]]
path = "/"
handler = "inspect"
`), 0o600)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := leanclient.Probe(ctx, srv.ListenerAddr("https").String(), leanclient.ProbeConfig{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	st := probeGroups(r)
	for _, g := range []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024} {
		if !st[g].Direct || !st[g].ViaHRR {
			t.Errorf("%s: %+v, want accepted directly and through HRR", pqtls.GroupName(g), st[g])
		}
	}
	for _, g := range []tls.CurveID{tls.X25519, tls.CurveP256, pqtls.GroupMLKEM768} {
		if st[g].Accepted() {
			t.Errorf("pq-only pqedge accepted %s", pqtls.GroupName(g))
		}
	}
	if c := probeCert(r, "ECDSA"); c.Err != nil || pqtls.KeyAlgorithm(c.Result.Certificates[0].PublicKey) != "ECDSA P-256" {
		t.Errorf("ECDSA list: %+v", c)
	}
	if c := probeCert(r, "mldsa65"); c.Err != nil || pqtls.KeyAlgorithm(c.Result.Certificates[0].PublicKey) != "ML-DSA-65" {
		t.Errorf("mldsa65 list: %+v", c)
	}
	if c := probeCert(r, "mldsa44"); c.Err == nil {
		t.Errorf("an mldsa44-only client completed a handshake with an ML-DSA-65 and ECDSA server")
	}
	for _, s := range r.Splits {
		if s.Err != nil {
			t.Errorf("split ClientHello (%s) failed: %v", s.Mode, s.Err)
		}
	}
}

// TestProbeNginx probes nginx 1.26 with OpenSSL 3.5 (the trixie peer)
// serving an ML-DSA-44 chain for two hybrid groups.
func TestProbeNginx(t *testing.T) {
	peers.Trixie(t)
	root, err := bench.NginxRoot(peers.Dir())
	if err != nil {
		peers.Missing(t, "nginx in the trixie peer root ("+err.Error()+")")
	}
	dir := t.TempDir()
	chain, err := bench.MakeChain(dir, certs.AlgMLDSA44, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	proc, err := bench.NginxLauncher{Root: root}.Start(ctx, bench.ServerSpec{
		Dir: dir, Chain: chain, Alg: bench.CertAlg{Name: "mldsa44-circl", Alg: certs.AlgMLDSA44, Signer: certs.SignerCircl},
		Groups: []tls.CurveID{tls.X25519MLKEM768, tls.SecP384r1MLKEM1024},
	})
	if err != nil {
		t.Fatalf("nginx: %v", err)
	}
	defer proc.Stop()
	r, err := leanclient.Probe(ctx, proc.Addr, leanclient.ProbeConfig{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	st := probeGroups(r)
	for _, g := range []tls.CurveID{tls.X25519MLKEM768, tls.SecP384r1MLKEM1024} {
		if !st[g].Direct {
			t.Errorf("nginx: %s not accepted directly: %+v", pqtls.GroupName(g), st[g])
		}
	}
	if st[tls.X25519].Accepted() {
		t.Error("nginx accepted x25519, which it was not configured with")
	}
	if c := probeCert(r, "mldsa44"); c.Err != nil || pqtls.KeyAlgorithm(c.Result.Certificates[0].PublicKey) != "ML-DSA-44" {
		t.Errorf("mldsa44 list: %+v", c)
	}
	if len(r.Preference) != 2 {
		t.Errorf("nginx preference %v, want the two configured groups", r.Preference)
	}
}
