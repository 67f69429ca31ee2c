package server

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls/leanclient"
)

const twoLocalSites = `
[[site]]
name = "a"
server_names = ["a.test"]
%s
[[site.route]]
path = "/"
handler = "inspect"
[[site]]
name = "b"
server_names = ["b.test"]
%s
[[site.route]]
path = "/"
handler = "inspect"
`

func twoSites(a, b string) string {
	return baseConfig + fmt.Sprintf(twoLocalSites, a, b)
}

// TestResumptionSurvivesReload: a Go client resumes its session with a
// ticket issued before a reload, since the ticket keys are a component of
// the server, not of a config generation.
func TestResumptionSurvivesReload(t *testing.T) {
	ts := startServer(t, twoSites("", ""))
	cfg := &tls.Config{RootCAs: ts.roots(), ServerName: "a.test", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	dial := func() bool {
		t.Helper()
		c, err := tls.Dial("tcp", ts.addr("https"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A TLS 1.3 ticket arrives after the handshake: read for it.
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		c.Read(make([]byte, 1))
		return c.ConnectionState().DidResume
	}
	if dial() {
		t.Fatal("the first connection resumed")
	}
	if !dial() {
		t.Fatal("the second connection did not resume")
	}
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, twoSites("[site.tls]\npolicy = \"pq-warn\"", ""))); err != nil {
		t.Fatal(err)
	}
	if !dial() {
		t.Fatal("a ticket issued before the reload did not resume after it")
	}
	if got := ts.metric(`pqedge_resumptions_total{origin="self",site="a"}`); got != "2" {
		t.Errorf("pqedge_resumptions_total{origin=self,site=a} = %q, want 2", got)
	}
}

// TestTicketScopes: a ticket of one site does not resume on another unless
// both share a ticket_scope; session_tickets = false issues none. The
// client offers site a's ticket to site b on purpose (leanclient sends any
// session it is given).
func TestTicketScopes(t *testing.T) {
	tests := []struct {
		name       string
		a, b       string
		wantTicket bool
		wantResume bool
	}{
		{"isolated by default", "", "", true, false},
		{"shared scope", "[site.tls]\nticket_scope = \"shop\"", "[site.tls]\nticket_scope = \"shop\"", true, true},
		{"different scopes", "[site.tls]\nticket_scope = \"x\"", "[site.tls]\nticket_scope = \"y\"", true, false},
		{"tickets off", "[site.tls]\nsession_tickets = false", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, twoSites(tt.a, tt.b))
			cfg := &leanclient.Config{ServerName: "a.test", Groups: []tls.CurveID{tls.X25519MLKEM768}, ReadTicket: true,
				SignatureAlgorithms: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, Timeout: 5 * time.Second}
			res, err := leanclient.Dial(t.Context(), ts.addr("https"), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if (res.Session != nil) != tt.wantTicket {
				t.Fatalf("ticket issued: %v, want %v", res.Session != nil, tt.wantTicket)
			}
			if res.Session == nil {
				return
			}
			// The same site always resumes its own ticket.
			own := *cfg
			own.Session, own.ReadTicket = res.Session, false
			if r, err := leanclient.Dial(t.Context(), ts.addr("https"), &own); err != nil || !r.Resumed {
				t.Fatalf("site a did not resume its own ticket: %v", err)
			}
			stolen := *res.Session
			stolen.ServerName = "b.test"
			other := *cfg
			other.ServerName, other.Session, other.ReadTicket = "b.test", &stolen, false
			r, err := leanclient.Dial(t.Context(), ts.addr("https"), &other)
			if err != nil {
				t.Fatal(err)
			}
			if r.Resumed != tt.wantResume {
				t.Errorf("site b resumed site a's ticket: %v, want %v", r.Resumed, tt.wantResume)
			}
		})
	}
}
