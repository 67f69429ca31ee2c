package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStreamProxyClosed is returned by Serve and ServeConn after Shutdown.
var ErrStreamProxyClosed = errors.New("stream proxy closed")

// Defaults applied to zero fields of StreamOptions.
const (
	DefaultStreamIdleTimeout = 5 * time.Minute
	DefaultHandshakeTimeout  = 10 * time.Second
)

// StreamOptions configure a StreamProxy. Zero fields take the documented
// default.
type StreamOptions struct {
	// ProxyProtocol is 0 (send no header), 1 or 2: the version of the PROXY
	// protocol header sent to the upstream before any client byte. Version 2
	// also carries the TLS facts (PP2_TYPE_SSL with version, cipher and
	// group sub-TLVs, PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY for the SNI).
	ProxyProtocol int
	// IdleTimeout ends a stream when no byte has moved in either direction
	// for this long, so a vanished peer does not pin two sockets forever.
	// Writes must also complete within it, so a peer that stops reading
	// cannot stall the other side. Default DefaultStreamIdleTimeout.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake ServeConn completes on a
	// *tls.Conn that has not finished it, against clients that open a
	// connection and stall. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// OnStreamEnd, if set, is called once for every connection handed to
	// ServeConn (also the ones that failed before reaching an upstream),
	// after both sides are closed, on the ServeConn goroutine. It is the
	// place for metrics and access logs; it should not block.
	OnStreamEnd func(StreamInfo)

	// Logger receives stream failures at Debug. Default slog.Default().
	Logger *slog.Logger
}

// StreamInfo describes one finished stream.
type StreamInfo struct {
	Client   net.Addr // the client's address
	Upstream string   // configured address of the upstream, empty if none was reached
	// FromClient and ToClient count the payload bytes relayed each way
	// (the PROXY header is not counted).
	FromClient, ToClient int64
	// Err is why the stream ended abnormally: handshake, dial (see
	// UpstreamUnreachable), idle timeout (see IsIdleTimeout), reset or
	// Shutdown (ErrStreamProxyClosed). nil when both sides closed cleanly.
	Err error
	// Duration is from ServeConn's start to the end of the stream.
	Duration time.Duration
	// Facts are the client handshake's facts: from the context ServeConn
	// was given (WithHandshakeFacts), else read off a *tls.Conn; nil for a
	// connection without TLS.
	Facts *HandshakeFacts
}

// UpstreamUnreachable reports whether a stream or request failed because no
// upstream could be reached (none usable, or every connect failed).
func UpstreamUnreachable(err error) bool {
	var de *dialError
	return errors.As(err, &de) || errors.Is(err, ErrNoHealthyUpstream)
}

// A stream's copy buffer, each direction: its size at first and once a
// read filled it (a bulk transfer).
const (
	streamBufStart = 2 << 10
	streamBufMax   = 32 << 10
)

// errIdle marks a stream ended by its idle timeout.
var errIdle = errors.New("stream idle")

// IsIdleTimeout reports whether a stream ended because no byte moved either
// way for StreamOptions.IdleTimeout.
func IsIdleTimeout(err error) bool { return errors.Is(err, errIdle) }

// StreamProxy relays byte streams between accepted connections and the
// upstreams of a pool. Its methods are safe for concurrent use.
type StreamProxy struct {
	pool *Pool
	opts StreamOptions
	log  *slog.Logger

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // client and upstream sides of live streams
	streams   int                   // live ServeConn calls
	closing   bool
	ended     chan struct{} // signaled (buffer 1) when a stream ends, for Shutdown
}

// NewStreamProxy returns a proxy relaying to pool's upstreams. The pool is
// not closed by the proxy.
func NewStreamProxy(pool *Pool, opts StreamOptions) (*StreamProxy, error) {
	if pool.tls {
		// A stream relays raw bytes to a socket; TLS to the origin (and a
		// PROXY header inside it, and half-closes through it) is not
		// what an https:// upstream promises.
		return nil, fmt.Errorf("failed to create stream proxy for pool %q: its upstreams are https://; a stream relays raw bytes to host:port or unix:/path upstreams", pool.name)
	}
	if opts.ProxyProtocol < 0 || opts.ProxyProtocol > 2 {
		return nil, fmt.Errorf("failed to create stream proxy for pool %q: PROXY protocol version %d, want 0, 1 or 2", pool.name, opts.ProxyProtocol)
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultStreamIdleTimeout
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &StreamProxy{
		pool: pool, opts: opts, log: log.With("pool", pool.name),
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
		ended:     make(chan struct{}, 1),
	}, nil
}

// Serve accepts connections from ln and relays each on its own goroutine
// until ln fails or Shutdown is called; it then returns ErrStreamProxyClosed
// (after Shutdown) or the accept error. Handing in a tls.Listener makes the
// handshake happen on the stream's goroutine, bounded by HandshakeTimeout.
func (p *StreamProxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrStreamProxyClosed
	}
	p.listeners[ln] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.isClosing() {
				return ErrStreamProxyClosed
			}
			// Out of file descriptors and the like pass; back off as
			// net/http does rather than spin.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("failed to accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		go p.ServeConn(context.Background(), c)
	}
}

func (p *StreamProxy) isClosing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closing
}

// Shutdown stops every Serve loop, refuses new streams and waits for live
// ones to end. When ctx ends first it closes the remaining streams and
// returns ctx's error.
func (p *StreamProxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	for ln := range p.listeners {
		ln.Close()
	}
	p.mu.Unlock()
	for {
		p.mu.Lock()
		n := p.streams
		p.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-p.ended:
		case <-ctx.Done():
			p.mu.Lock()
			for c := range p.conns {
				c.Close()
			}
			p.mu.Unlock()
			return ctx.Err()
		}
	}
}

// track registers a connection of a live stream so Shutdown can close it;
// it refuses once Shutdown has started.
func (p *StreamProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *StreamProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// ServeConn relays c to an upstream until both directions are finished, the
// idle timeout passes, ctx ends or Shutdown gives up waiting. It closes c
// and returns why the stream ended abnormally (nil for a clean end).
func (p *StreamProxy) ServeConn(ctx context.Context, c net.Conn) error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		c.Close()
		// OnStreamEnd promises a call for every connection handed in.
		if p.opts.OnStreamEnd != nil {
			p.opts.OnStreamEnd(StreamInfo{Client: c.RemoteAddr(), Err: ErrStreamProxyClosed})
		}
		return ErrStreamProxyClosed
	}
	p.streams++
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	start := time.Now()
	s := &stream{p: p, client: c, info: StreamInfo{Client: c.RemoteAddr()}}
	if f, ok := HandshakeFactsFrom(ctx); ok {
		s.info.Facts = &f
	}
	err := s.run(ctx)
	s.info.Err, s.info.Duration = err, time.Since(start)
	if err != nil {
		p.log.Debug("stream failed", "client", s.info.Client, "upstream", s.info.Upstream, "err", err)
	}
	if p.opts.OnStreamEnd != nil {
		p.opts.OnStreamEnd(s.info)
	}
	p.mu.Lock()
	p.streams--
	delete(p.conns, c)
	p.mu.Unlock()
	select {
	case p.ended <- struct{}{}:
	default:
	}
	return err
}

// stream is the state of one relayed connection.
type stream struct {
	p        *StreamProxy
	client   net.Conn
	upstream net.Conn
	info     StreamInfo
	lastIO   atomic.Int64 // UnixNano of the last byte moved either way
}

// run lists the steps of a stream.
func (s *stream) run(ctx context.Context) error {
	defer s.client.Close()
	if err := s.handshake(ctx); err != nil {
		return err
	}
	if err := s.dialUpstream(ctx); err != nil {
		return err
	}
	defer s.upstream.Close()
	defer s.p.untrack(s.upstream)
	// From here on a ctx that ends tears the stream down and the copies
	// fail fast; before, ctx bounded the handshake and the dial itself.
	stop := context.AfterFunc(ctx, s.closeBoth)
	defer stop()
	if err := s.sendProxyHeader(); err != nil {
		return err
	}
	return s.splice()
}

// handshake completes the TLS handshake of a *tls.Conn, so the stream's
// first read is not where a slow client stalls and the PROXY header can
// carry what was negotiated.
func (s *stream) handshake(ctx context.Context) error {
	tc, ok := s.client.(*tls.Conn)
	if !ok {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, s.p.opts.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return fmt.Errorf("failed TLS handshake with %s: %w", s.info.Client, err)
	}
	st := tc.ConnectionState()
	if s.info.Facts == nil {
		f := factsOf(&st)
		s.info.Facts = &f
	}
	return nil
}

func (s *stream) dialUpstream(ctx context.Context) error {
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(s.client.RemoteAddr().String()); err == nil {
		client = ap.Addr()
	}
	up, addr, err := s.p.pool.Dial(ctx, client)
	if err != nil {
		return err
	}
	if !s.p.track(up) {
		up.Close()
		return ErrStreamProxyClosed
	}
	s.upstream, s.info.Upstream = up, addr
	return nil
}

func (s *stream) sendProxyHeader() error {
	if s.p.opts.ProxyProtocol == 0 {
		return nil
	}
	h, err := proxyHeader(s.p.opts.ProxyProtocol, s.client, s.info.Facts)
	if err != nil {
		return err
	}
	// An upstream that does not read must not hold the stream past the
	// idle timeout.
	if err := s.upstream.SetWriteDeadline(time.Now().Add(s.p.opts.IdleTimeout)); err != nil {
		return err
	}
	if _, err := h.WriteTo(s.upstream); err != nil {
		return fmt.Errorf("failed to send PROXY header to %s: %w", s.info.Upstream, err)
	}
	return nil
}

// splice copies both ways until both directions end or one fails.
func (s *stream) splice() error {
	s.touch()
	errc := make(chan error, 2)
	go func() { errc <- s.copy(s.upstream, s.client, &s.info.FromClient) }()
	go func() { errc <- s.copy(s.client, s.upstream, &s.info.ToClient) }()
	err := <-errc
	if err != nil {
		// One side broke: unblock the other copy.
		s.closeBoth()
	}
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

func (s *stream) closeBoth() {
	s.client.Close()
	s.upstream.Close()
}

func (s *stream) touch() { s.lastIO.Store(time.Now().UnixNano()) }

// copy relays src to dst until src ends, then half-closes dst so the peer
// sees the end while the other direction carries on.
func (s *stream) copy(dst, src net.Conn, count *int64) error {
	idle := s.p.opts.IdleTimeout
	// A read waits holding its buffer, and DoT clients keep their
	// streams open between queries: each direction starts small (a DNS
	// message over TCP is usually under 1,232 bytes, RFC 9715) and grows
	// once a read fills it. 32 KiB a direction for every idle stream made
	// 10,000 of them cost 640 MiB of buffers.
	buf := make([]byte, streamBufStart)
	for {
		// The read deadline is the idle timeout; it is re-armed on every
		// pass and only fatal when the other direction was idle too.
		if err := src.SetReadDeadline(time.Now().Add(idle)); err != nil {
			return err
		}
		n, err := src.Read(buf)
		if n > 0 {
			s.touch()
			// A peer that stops reading would block this write forever.
			if werr := dst.SetWriteDeadline(time.Now().Add(idle)); werr != nil {
				return werr
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			atomic.AddInt64(count, int64(n))
			s.touch()
			if n == len(buf) && len(buf) < streamBufMax {
				buf = make([]byte, streamBufMax)
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return closeWrite(dst, idle)
		case isTimeout(err) && time.Since(time.Unix(0, s.lastIO.Load())) < idle:
			// The other direction is busy; the stream is not idle.
		case isTimeout(err):
			return fmt.Errorf("%w for %v: %w", errIdle, idle, err)
		default:
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type closeWriter interface{ CloseWrite() error }

// closeWrite signals the end of the stream to c's peer without closing the
// read half. A *tls.Conn sends close_notify (RFC 8446 Section 6.1) and then
// the TCP FIN; a connection that cannot half-close is closed.
func closeWrite(c net.Conn, timeout time.Duration) error {
	// close_notify is a write: it must not block on a peer that stopped
	// reading.
	if err := c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		if cw, ok := tc.NetConn().(closeWriter); ok {
			return cw.CloseWrite()
		}
		return nil
	}
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
