package bench

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// plainQUICTimeout bounds a QUIC connection of the plain server that
// stalls in its handshake or goes idle, as the TCP side's 10 s deadline
// does: a client that stops must not hold the server's state forever.
const plainQUICTimeout = 10 * time.Second

// servePlainQUIC serves HTTP/3 on UDP at the TCP listener's address with
// the same TLS configuration (quic-go drives crypto/tls's QUIC API, so the
// groups and certificate are the very same), until stop is called. It
// answers every request with "ok"; the benchmark sends none, but what an
// HTTP/3 server does on every connection (its control stream and
// SETTINGS, RFC 9114 Section 6.2.1) is part of the floor.
func servePlainQUIC(addr *net.TCPAddr, cfg *tls.Config) (stop func(), err error) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: addr.IP, Port: addr.Port, Zone: addr.Zone})
	if err != nil {
		return nil, fmt.Errorf("failed to listen on UDP %s: %w", addr, err)
	}
	srv := &http3.Server{
		Handler:    http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }),
		TLSConfig:  http3.ConfigureTLSConfig(cfg.Clone()),
		QUICConfig: &quic.Config{HandshakeIdleTimeout: plainQUICTimeout, MaxIdleTimeout: plainQUICTimeout},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(udp)
	}()
	return func() {
		srv.Close()
		udp.Close()
		<-done
	}, nil
}
