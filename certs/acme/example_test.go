package acme_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"github.com/pqedge/pqedge/certs/acme"
)

// A site with ACME certificates: the https listener serves them and answers
// TLS-ALPN-01; the port-80 listener answers HTTP-01 and redirects the rest.
// (Not run: it would need the network and ports 80 and 443.)
func ExampleNew() {
	m, err := acme.New(acme.Options{
		Email:            "ops@example.com",
		DataDir:          "/var/lib/pqedge",
		HTTPChallenge:    true,
		TLSALPNChallenge: true,
		OnEvent: func(ev acme.Event) {
			// Count ev.Kind in a metric; alert on acme.EventFailed.
		},
	})
	if err != nil {
		slog.Error("acme", "error", err)
		return
	}
	defer m.Close()

	tlsConf := &tls.Config{
		GetCertificate: m.GetCertificate,
		// acme-tls/1 is required for TLS-ALPN-01.
		NextProtos: []string{"h2", "http/1.1", acme.ALPNProtocol},
	}
	https := &http.Server{Addr: ":443", TLSConfig: tlsConf, ReadHeaderTimeout: 10 * time.Second}
	plain := &http.Server{Addr: ":80", Handler: m.HTTPChallengeHandler(acme.RedirectToHTTPS(443)), ReadHeaderTimeout: 10 * time.Second}
	go plain.ListenAndServe()
	go https.ListenAndServeTLS("", "")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := m.Manage(ctx, []string{"example.com", "www.example.com"}); err != nil {
		slog.Error("acme", "error", err) // names the directory and carries a hint
	}
	for _, c := range m.Expiry() {
		slog.Info("certificate", "names", c.Names, "days_left", time.Until(c.NotAfter).Hours()/24)
	}
}
