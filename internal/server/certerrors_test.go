package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// TestBadCertificatesStopStartup: each broken certificate setup stops
// startup with an error naming the file.
func TestBadCertificatesStopStartup(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	write := func(base string, names []string, now time.Time, validity time.Duration) {
		leaf, err := ca.Issue(certs.LeafOptions{Names: names, Alg: certs.AlgECDSAP256, Now: now, Validity: validity})
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteKeyPair(filepath.Join(dir, base), leaf); err != nil {
			t.Fatal(err)
		}
	}
	write("good", []string{"localhost"}, time.Now(), 0)
	write("other", []string{"localhost"}, time.Now(), 0)
	write("wrongname", []string{"example.org"}, time.Now(), 0)
	write("expired", []string{"localhost"}, time.Now().Add(-48*time.Hour), time.Hour)
	os.WriteFile(filepath.Join(dir, "garbage.crt"), []byte("not a certificate\n"), 0o644)

	tests := []struct {
		name, cert, key, extra, want string
	}{
		{"bad PEM", "garbage.crt", "good.key", "", "garbage.crt"},
		{"mismatched key", "good.crt", "other.key", "", "good.crt"},
		{"wrong name", "wrongname.crt", "wrongname.key", "", "wrongname.crt"},
		{"expired", "expired.crt", "expired.key", "", "expired.crt"},
		{"missing", "missing.crt", "missing.key", "", "missing.crt"},
		{"missing pq_root", "good.crt", "good.key", `pq_root = "` + filepath.Join(dir, "no-root.crt") + `"`, "no-root.crt"},
		{"pq_root not PEM", "good.crt", "good.key", `pq_root = "` + filepath.Join(dir, "garbage.crt") + `"`, "pq_root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadConfig(t, t.TempDir(), baseConfig+inspectSiteWith(`certs = "files"
`+tt.extra+`
[[site.cert]]
cert = "`+filepath.Join(dir, tt.cert)+`"
key = "`+filepath.Join(dir, tt.key)+`"
`))
			srv, err := New(cfg, Options{Logger: testLogger(t)})
			if err == nil {
				srv.Shutdown(t.Context())
				t.Fatal("started with a broken certificate")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
			t.Logf("%s: %v", tt.name, err)
		})
	}
}
