package server

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

// TestPQWarnClassicalClients: under pq-warn a classical client is served,
// gets the header, is told on the inspect page (HTML and JSON), and is
// counted in pqedge_handshakes_total{pq="false"} by family (one handshake
// per client: its two requests share the connection).
func TestPQWarnClassicalClients(t *testing.T) {
	ts := startServer(t, baseConfig+pqWarnInspectSite)
	base := "https://" + ts.addr("https") + "/"
	tests := []struct {
		group  tls.CurveID
		warned bool
	}{
		{tls.X25519, true},
		{tls.CurveP256, true},
		{tls.X25519MLKEM768, false},
	}
	for _, tt := range tests {
		t.Run(pqtls.GroupName(tt.group), func(t *testing.T) {
			c := ts.client(tt.group)
			rep := inspect(t, c, base)
			if (rep.Warning != "") != tt.warned || (rep.Warning != "" && !strings.Contains(rep.Warning, pqtls.GroupName(tt.group))) {
				t.Errorf("inspect JSON warning %q, warned=%v", rep.Warning, tt.warned)
			}
			resp, err := c.Get(base)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := resp.Header.Get(PQWarningHeader) != ""; got != tt.warned {
				t.Errorf("%s header present = %v, want %v", PQWarningHeader, got, tt.warned)
			}
			if got := strings.Contains(string(body), `id="warning"`); got != tt.warned {
				t.Errorf("inspect page shows the warning = %v, want %v", got, tt.warned)
			}
			// The what-if sentence is for classical connections; one
			// that already uses ML-KEM has nothing to gain.
			if got := strings.Contains(string(body), `id="if-mlkem"`); got != tt.warned {
				t.Errorf("inspect page shows the what-if-ML-KEM sentence = %v, want %v", got, tt.warned)
			}
		})
	}
	for _, tt := range []struct{ group, pq, want string }{
		{"x25519", "false", "1"}, {"secp256r1", "false", "1"}, {"X25519MLKEM768", "true", "1"},
	} {
		prefix := `pqedge_handshakes_total{family="go",group="` + tt.group + `",hello_retry="false",listener="https",pq="` + tt.pq + `",resumed="false",signature="ecdsa_secp256r1_sha256",site="local",transport="tcp"}`
		if got := ts.metric(prefix); got != tt.want {
			t.Errorf("%s = %q, want %s", prefix, got, tt.want)
		}
	}
}
