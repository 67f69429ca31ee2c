package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// Settings of the plain proxy floor. They are those of a careful minimal
// Go reverse proxy: the timeouts any server facing the internet needs, and
// an upstream keep-alive pool large enough that no request under the
// harness's load waits for a re-dial.
const (
	// PlainUpstreamIdleConns is the floor's keep-alive pool per upstream:
	// above the harness's default HTTP/2 concurrency (32 connections x 10
	// streams), so no upstream connection is closed and dialled again.
	PlainUpstreamIdleConns = 512
	// plainHandshakeTimeout bounds a client's handshake and request
	// headers, against clients that connect and stall (pqedge's default).
	plainHandshakeTimeout = 10 * time.Second
	// plainIdleTimeout closes keep-alive connections idle this long.
	plainIdleTimeout = 2 * time.Minute
	// plainUpstreamTimeout bounds an upstream's response headers, and
	// plainStreamIdle a TCP stream with no byte in one direction.
	plainUpstreamTimeout = time.Minute
	plainStreamIdle      = 5 * time.Minute
	plainDialTimeout     = 5 * time.Second
)

// PlainProxyOptions configure ServePlainProxy. At least one of Listen and
// StreamListen must be set.
type PlainProxyOptions struct {
	// Listen is the HTTPS address (HTTP/2 and HTTP/1.1) proxying to
	// Upstream, an HTTP/1.1 server at host:port.
	Listen, Upstream string
	// StreamListen is the TLS address whose bytes are relayed to
	// StreamUpstream (host:port), both ways.
	StreamListen, StreamUpstream string

	CertFile, KeyFile string
	Groups            []tls.CurveID
	// Signer is the ML-DSA implementation; "" means the standard library's.
	Signer certs.SignerKind
	// Ready, when set, is called once both listeners listen, with their
	// addresses ("" for one not asked for).
	Ready func(https, stream string)
}

// ServePlainProxy is the floor of `bench proxy`: what a reverse proxy
// costs in Go with nothing of pqedge's own. HTTPS is crypto/tls, net/http
// and httputil.ReverseProxy over an http.Transport keeping
// PlainUpstreamIdleConns idle connections; the stream listener is
// crypto/tls and two copy loops. It does what every such proxy must
// (timeouts, X-Forwarded-* headers, half-closes) and nothing else: no
// ClientHello capture, no routing, no metrics, no logs. It serves until
// ctx ends.
func ServePlainProxy(ctx context.Context, opts PlainProxyOptions) error {
	if opts.Listen == "" && opts.StreamListen == "" {
		return errors.New("no listen address for the plain proxy")
	}
	if opts.Listen != "" && opts.Upstream == "" || opts.StreamListen != "" && opts.StreamUpstream == "" {
		return errors.New("each plain proxy listener needs its upstream")
	}
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
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	listen := func(addr string) (net.Listener, string, error) {
		if addr == "" {
			return nil, "", nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, "", fmt.Errorf("failed to listen on %s: %w", addr, err)
		}
		lns = append(lns, ln)
		return ln, ln.Addr().String(), nil
	}
	httpsLn, httpsAddr, err := listen(opts.Listen)
	if err != nil {
		return err
	}
	streamLn, streamAddr, err := listen(opts.StreamListen)
	if err != nil {
		return err
	}
	if opts.Ready != nil {
		opts.Ready(httpsAddr, streamAddr)
	}

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if httpsLn != nil {
		srv, err := newPlainHTTPServer(cfg, opts.Upstream)
		if err != nil {
			return err
		}
		wg.Go(func() {
			if err := srv.ServeTLS(httpsLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("failed to serve on %s: %w", httpsAddr, err)
			}
		})
		stop := context.AfterFunc(ctx, func() { srv.Close() })
		defer stop()
	}
	if streamLn != nil {
		wg.Go(func() {
			if err := serveStreams(ctx, streamLn, cfg, opts.StreamUpstream); err != nil {
				errc <- err
			}
		})
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
	return err
}

func newPlainHTTPServer(cfg *tls.Config, upstream string) (*http.Server, error) {
	target, err := url.Parse("http://" + upstream)
	if err != nil || target.Host != upstream {
		return nil, fmt.Errorf("failed to parse upstream %q: want host:port", upstream)
	}
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: plainDialTimeout}).DialContext,
		MaxIdleConnsPerHost:   PlainUpstreamIdleConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: plainUpstreamTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the upstream serves the public name
			pr.SetXForwarded()
		},
		Transport: transport,
		ErrorLog:  discardLog,
	}
	return &http.Server{
		Handler:   rp,
		TLSConfig: cfg,
		// net/http bounds the TLS handshake by the smallest of these.
		ReadHeaderTimeout: plainHandshakeTimeout,
		IdleTimeout:       plainIdleTimeout,
		ErrorLog:          discardLog,
	}, nil
}

// serveStreams accepts TLS streams until ln is closed and relays each to
// upstream.
func serveStreams(ctx context.Context, ln net.Listener, cfg *tls.Config, upstream string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("failed to accept on %s: %w", ln.Addr(), err)
		}
		wg.Go(func() { relayStream(ctx, tls.Server(c, cfg), upstream) })
	}
}

func relayStream(ctx context.Context, tc *tls.Conn, upstream string) {
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(plainHandshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return
	}
	up, err := (&net.Dialer{Timeout: plainDialTimeout}).DialContext(ctx, "tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { tc.Close(); up.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		copyIdle(up, tc)
		up.(*net.TCPConn).CloseWrite()
	})
	copyIdle(tc, up)
	tc.CloseWrite() // close_notify: the client's read side ends cleanly
	wg.Wait()
}

// copyIdle copies src to dst until EOF or an error, with a deadline of
// plainStreamIdle on every read and write: a peer that vanishes or stops
// reading cannot hold the stream forever.
func copyIdle(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		src.SetReadDeadline(time.Now().Add(plainStreamIdle))
		n, err := src.Read(buf)
		if n > 0 {
			dst.SetWriteDeadline(time.Now().Add(plainStreamIdle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// discardLog silences net/http's and ReverseProxy's error logs: the floor
// must not pay for logging that pqedge (access log off) does not do.
var discardLog = log.New(io.Discard, "", 0)
