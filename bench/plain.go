package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// PlainOptions configure ServePlain.
type PlainOptions struct {
	Listen            string // host:port
	CertFile, KeyFile string
	Groups            []tls.CurveID
	// Signer is the ML-DSA implementation; "" means the standard
	// library's (crypto/tls's own behaviour).
	Signer certs.SignerKind
	// QUIC also serves HTTP/3 (quic-go over the same crypto/tls
	// configuration, ALPN h3) on UDP at the same address: the floor of the
	// matrix's quic transport.
	QUIC bool
	// Ready, when set, is called with the listening address.
	Ready func(addr string)
}

// ServePlain is the floor of the matrix: a crypto/tls server that completes
// handshakes, reads until the client closes, and does nothing else (no
// ClientHello capture, no certificate selection, no HTTP, no metrics). It
// serves until ctx ends.
func ServePlain(ctx context.Context, opts PlainOptions) error {
	cert, err := certs.LoadKeyPair(opts.CertFile, opts.KeyFile)
	if err != nil {
		return err
	}
	if opts.Signer != "" {
		if err := certs.WrapSigner(cert, opts.Signer); err != nil {
			return err
		}
	}
	cfg := &tls.Config{
		Certificates:     []tls.Certificate{*cert},
		CurvePreferences: opts.Groups,
		MinVersion:       tls.VersionTLS13,
		NextProtos:       []string{"h2", "http/1.1"},
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", opts.Listen, err)
	}
	if opts.QUIC {
		stopQUIC, err := servePlainQUIC(ln.Addr().(*net.TCPAddr), cfg)
		if err != nil {
			ln.Close()
			return err
		}
		defer stopQUIC()
	}
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("failed to accept on %s: %w", opts.Listen, err)
		}
		wg.Go(func() { servePlainConn(c, cfg) })
	}
}

func servePlainConn(c net.Conn, cfg *tls.Config) {
	defer c.Close()
	// A client that stops mid-handshake or never closes must not hold a
	// goroutine forever.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		return
	}
	io.Copy(io.Discard, tc) // until close_notify or EOF
	// Answer with close_notify, as RFC 8446 Section 6.1 asks and as every
	// real server (pqedge, nginx) does: the floor pays for it too.
	tc.Close()
}
