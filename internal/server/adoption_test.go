package server

import (
	"encoding/json"
	"github.com/pqedge/pqedge/internal/pages"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"crypto/tls"

	"github.com/pqedge/pqedge/pqtls"
)

// TestAdoptionPage makes real handshakes and reads the admin page, with the
// server's clock injected one minute ahead of the wall clock (handshake
// deadlines use it too, so it must not run behind).
func TestAdoptionPage(t *testing.T) {
	skew := time.Minute
	dir := t.TempDir()
	cfg := loadConfig(t, dir, baseConfig+pqWarnInspectSite)
	srv, err := New(cfg, Options{Logger: testLogger(t), Now: func() time.Time { return time.Now().Add(skew) }})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	base := "https://" + ts.addr("https") + "/"
	for _, g := range []tls.CurveID{tls.X25519MLKEM768, tls.X25519MLKEM768, tls.X25519} {
		inspect(t, ts.client(g), base)
	}
	admin := "http://" + srv.AdminAddr().String() + "/adoption"
	resp, err := http.Get(admin + "?format=json")
	if err != nil {
		t.Fatal(err)
	}
	var rep pages.AdoptionReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := rep.Now.Sub(time.Now()); d < skew/2 {
		t.Errorf("report time %v is not the injected clock", rep.Now)
	}
	for _, w := range rep.Windows {
		if w.Total != 3 || w.PQ != 2 || len(w.Families) != 1 || w.Families[0].Family != pqtls.FamilyGo {
			t.Errorf("%s: %+v, want 3 handshakes from go, 2 post-quantum", w.Name, w)
		}
	}
	resp, err = http.Get(admin)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"last hour: 66.7% post-quantum", "<td>go</td>", "width: 66.7%"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("adoption page lacks %q:\n%s", want, body)
		}
	}
}
