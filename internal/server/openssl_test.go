package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/peers"
)

// TestTrustedModeWithOpenSSL: under pq_certs = "trusted", OpenSSL 3.5's
// s_client gets the ML-DSA chain only when it names the PQ root in
// certificate_authorities (-requestCAfile), and verifies it; without that
// it gets the classical chain.
func TestTrustedModeWithOpenSSL(t *testing.T) {
	trixie := peers.Trixie(t)
	ts := startServer(t, baseConfig+inspectSiteWith(`pq_certs = "trusted"`+"\n"))
	host, inside := trixie.TempDir(t)
	for _, f := range []string{"pq-ca.crt", "classical-ca.crt"} {
		data, err := os.ReadFile(filepath.Join(ts.dir, "data", "local", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(host, f), data, 0o644)
	}
	tests := []struct {
		name    string
		args    []string
		wantSig string
		wantCA  string
	}{
		{"names the PQ root", []string{"-requestCAfile", inside + "/pq-ca.crt", "-CAfile", inside + "/pq-ca.crt"}, "mldsa65", ""},
		{"names nothing", []string{"-CAfile", inside + "/classical-ca.crt"}, "ecdsa_secp256r1_sha256", ""},
		{"names only the classical root", []string{"-requestCAfile", inside + "/classical-ca.crt", "-CAfile", inside + "/classical-ca.crt"}, "ecdsa_secp256r1_sha256", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"s_client", "-connect", ts.addr("https"), "-servername", "localhost",
				"-groups", "X25519MLKEM768", "-verify_return_error", "-ign_eof"}, tt.args...)
			cmd := trixie.Command(ctx, "openssl", args...)
			cmd.Stdin = strings.NewReader("GET /?format=json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("s_client failed: %v\n%s", err, out)
			}
			text := string(out)
			if !strings.Contains(text, "Verify return code: 0 (ok)") {
				t.Errorf("s_client did not verify the chain:\n%s", text)
			}
			if !strings.Contains(text, `"signature": "`+tt.wantSig+`"`) {
				t.Errorf("pqedge's inspect JSON does not report signature %s:\n%s", tt.wantSig, text)
			}
			if !strings.Contains(text, `"group": "X25519MLKEM768"`) {
				t.Errorf("not X25519MLKEM768:\n%s", text)
			}
		})
	}
}
