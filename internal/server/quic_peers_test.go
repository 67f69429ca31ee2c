package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/compat"
	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/internal/peers"
	"github.com/pqedge/pqedge/pqtls"
)

// h3InspectSite is the inspect page over HTTP/3 with a pq_certs mode.
func h3InspectSite(pqCerts string) string {
	return h3Config + inspectSiteWith(`pq_certs = "`+pqCerts+`"`+"\n")
}

// TestHTTP3Curl drives curl 8.14 (OpenSSL 3.5's QUIC) from the trixie
// root over HTTP/3 alone with each hybrid group, and checks pqedge's own
// record of each handshake: QUIC, the group curl was told to use, the
// signature served, curl's family; and what curl received. With
// pq_certs = "always", curl, which offers ML-DSA and trusts the local
// ML-DSA root, verifies the ML-DSA chain over QUIC.
func TestHTTP3Curl(t *testing.T) {
	trixie := peers.Trixie(t)
	ts, hs := startH3(t, h3InspectSite("off"))
	// The same local CA: the ML-DSA chain served to every client that can
	// verify it.
	pq, pqhs := startH3(t, strings.Replace(h3InspectSite("always"), "{{DATA}}/data", ts.dir+"/data", 1))
	host, inside := trixie.TempDir(t)
	var bundle []byte
	for _, f := range []string{"classical-ca.crt", "pq-ca.crt"} {
		b, err := os.ReadFile(filepath.Join(ts.dir, "data", "local", f))
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	if err := os.WriteFile(filepath.Join(host, "roots.pem"), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pqCerts, curves, wantGroup, wantSig string
	}{
		{"off", "X25519MLKEM768", "X25519MLKEM768", "ecdsa_secp256r1_sha256"},
		{"off", "SecP256r1MLKEM768", "SecP256r1MLKEM768", "ecdsa_secp256r1_sha256"},
		{"off", "SecP384r1MLKEM1024", "SecP384r1MLKEM1024", "ecdsa_secp256r1_sha256"},
		{"off", "x25519", "x25519", "ecdsa_secp256r1_sha256"},
		{"always", "X25519MLKEM768", "X25519MLKEM768", "mldsa65"},
	}
	for _, tt := range tests {
		t.Run("pq_certs="+tt.pqCerts+"/"+tt.curves, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ts, hs := ts, hs
			if tt.pqCerts == "always" {
				ts, hs = pq, pqhs
			}
			_, port, _ := net.SplitHostPort(ts.srv.QUICAddr("https").String())
			mark := hs.mark()
			out, err := trixie.Command(ctx, "curl", "-sS", "--http3-only", "--curves", tt.curves, "--cacert", inside+"/roots.pem",
				"https://localhost:"+port+"/?format=json").CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			ev := hs.wait(t, mark, "curl's QUIC handshake", overQUIC)
			h := ev.Handshake
			if h == nil {
				t.Fatalf("pqedge recorded a failure: %s: %v", ev.Reason, ev.Err)
			}
			if h.Transport != pqtls.TransportQUIC || h.GroupName() != tt.wantGroup || h.SignatureName() != tt.wantSig || ev.Family != pqtls.FamilyCurlOpenSSL {
				t.Errorf("pqedge recorded %s, group %s, signature %s, family %s", h.Transport, h.GroupName(), h.SignatureName(), ev.Family)
			}
			var rep pages.InspectReport
			if err := json.Unmarshal(out, &rep); err != nil {
				t.Fatalf("curl got no inspect JSON: %v\n%s", err, out)
			}
			if rep.Transport != "quic" || rep.Group != tt.wantGroup || rep.Signature != tt.wantSig {
				t.Errorf("curl read transport %q group %q signature %q", rep.Transport, rep.Group, rep.Signature)
			}
		})
	}
}

// TestHTTP3Chromium loads the inspect page in headless Chromium forced
// onto QUIC for the listener, trusting the local classical root: pqedge
// records a QUIC handshake with X25519MLKEM768 and the classical chain
// (Chromium cannot verify the local ML-DSA root), family chromium, and the
// page Chromium rendered says HTTP/3 and protected.
func TestHTTP3Chromium(t *testing.T) {
	chromium := peers.Binary(t, "chromium")
	certutil := peers.Binary(t, "certutil")
	ts, hs := startH3(t, h3InspectSite("off"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	port := ts.srv.QUICAddr("https").(*net.UDPAddr).Port
	mark := hs.mark()
	out := compat.ChromiumQUIC(ctx, chromium, certutil, t.TempDir(), fmt.Sprintf("https://localhost:%d/", port), port,
		compat.Trust{filepath.Join(ts.dir, "data", "local", "classical-ca.crt")})
	if out.Err != nil {
		t.Fatalf("chromium: %v", out.Err)
	}
	ev := hs.wait(t, mark, "Chromium's QUIC handshake", func(ev HandshakeEvent) bool { return overQUIC(ev) && ev.Handshake != nil })
	if h := ev.Handshake; h.GroupName() != "X25519MLKEM768" || h.SignatureName() != "ecdsa_secp256r1_sha256" || ev.Family != pqtls.FamilyChromium {
		t.Errorf("pqedge recorded group %s, signature %s, family %s", h.GroupName(), h.SignatureName(), ev.Family)
	}
	if !strings.Contains(out.Body, `<td id="transport">QUIC (HTTP/3)</td>`) || out.Verdict != "protected" {
		t.Errorf("Chromium showed verdict %q and no HTTP/3 transport:\n%s", out.Verdict, out.Body)
	}
}
