package leanclient

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/internal/peers"
)

// opensslServer is an `openssl s_server` in the trixie root.
type opensslServer struct {
	addr  string
	roots *x509.CertPool
	log   *bytes.Buffer
}

// opensslKeyArgs are the `openssl req -newkey` arguments per key algorithm.
var opensslKeyArgs = map[string][]string{
	"ecdsa":   {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"},
	"rsa":     {"-newkey", "rsa:2048"},
	"ed25519": {"-newkey", "ed25519"},
	"mldsa44": {"-newkey", "mldsa44"},
	"mldsa65": {"-newkey", "mldsa65"},
	"mldsa87": {"-newkey", "mldsa87"},
}

// startOpenSSL makes a self-signed certificate of alg with openssl and
// serves it with s_server limited to groups (colon-separated OpenSSL names,
// which are the IANA names).
func startOpenSSL(t testing.TB, alg, groups string, extra ...string) *opensslServer {
	t.Helper()
	root := peers.Trixie(t)
	host, inside := root.TempDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost",
		"-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
		"-keyout", inside + "/key.pem", "-out", inside + "/cert.pem"}, opensslKeyArgs[alg]...)
	if out, err := root.Command(ctx, "openssl", args...).CombinedOutput(); err != nil {
		cancel()
		t.Fatalf("failed to make %s certificate with openssl: %v\n%s", alg, err, out)
	}
	pemBytes, err := os.ReadFile(filepath.Join(host, "cert.pem"))
	if err != nil {
		cancel()
		t.Fatalf("failed to read openssl certificate: %v", err)
	}
	roots := x509.NewCertPool()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		cancel()
		t.Fatalf("no PEM block in openssl certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		cancel()
		t.Fatalf("failed to parse openssl %s certificate: %v", alg, err)
	}
	roots.AddCert(cert)

	port := freeport.Must(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args = append([]string{"s_server", "-accept", addr, "-cert", inside + "/cert.pem", "-key", inside + "/key.pem",
		"-tls1_3", "-www", "-quiet", "-groups", groups}, extra...)
	cmd := root.Command(ctx, "openssl", args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("failed to start openssl s_server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cancel(); <-exited })

	// Poll until s_server accepts connections.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("openssl s_server exited: %s", log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("openssl s_server did not listen on %s: %s", addr, log.String())
		}
	}
	return &opensslServer{addr: addr, roots: roots, log: &log}
}

func opensslGroups(ids ...string) string { return strings.Join(ids, ":") }
