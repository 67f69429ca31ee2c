package server

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/pqedge/pqedge/internal/connlimit"
)

// proxyInConn reads the PROXY protocol header (v1 or v2) a load balancer in
// front of the listener sends before the TLS bytes
// (haproxy.org/download/3.0/doc/proxy-protocol.txt), with the library the
// outbound side uses. From a trusted network the header is required and its
// client address becomes the connection's RemoteAddr, so everything that
// reads the peer address (logs, X-Forwarded-For, pq_rule, metrics) sees the
// client; from anywhere else a header is refused. The header is read on
// the connection's first Read, inside the TLS handshake and under its
// deadline, never on the accept loop.
type proxyInConn struct {
	*proxyproto.Conn
	// headerErr is the error of the first Read, when it came from the
	// PROXY header (missing, malformed, or sent by an untrusted peer).
	headerErr error
	read      bool
}

// wrapProxyIn wraps raw for a listener whose load balancers are trusted;
// timeout bounds the wait for the header (the handshake timeout).
func wrapProxyIn(raw net.Conn, trusted []netip.Prefix, timeout time.Duration) *proxyInConn {
	policy := proxyproto.REJECT
	if trustedProxy(raw.RemoteAddr(), trusted) {
		policy = proxyproto.REQUIRE
	}
	return &proxyInConn{Conn: proxyproto.NewConn(raw, proxyproto.WithPolicy(policy), proxyproto.SetReadHeaderTimeout(timeout))}
}

// trustedProxy reports whether addr, a connection's peer, is in one of
// the trusted load balancers' networks (proxy_protocol_in). An IPv4
// client over an IPv6 socket (::ffff:10.0.0.1) matches its IPv4 network,
// and a link-local address matches whatever its interface: a prefix has
// no zone (net/netip), and netip.Prefix.Contains never matches an
// address that has one, so fe80::1%eth0 would otherwise match nothing
// (connlimit.AddrIP, which the limiter counts clients by too).
func trustedProxy(addr net.Addr, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	a, ok := connlimit.AddrIP(addr)
	if !ok {
		return false
	}
	return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a) })
}

func (c *proxyInConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.read {
		c.read = true
		if err != nil && isProxyHeaderError(err) {
			c.headerErr = err
		}
	}
	return n, err
}

// CloseWrite half-closes the connection under the PROXY reader, for the
// lingering close after the plain-HTTP answer (lingerClose), which finds it
// through this method: the reader has no NetConn, and without it the 400
// to a request longer than the first reads (a body, many fields) was
// followed by a reset, "connection reset by peer" where the answer was.
func (c *proxyInConn) CloseWrite() error {
	cw, ok := under[interface{ CloseWrite() error }](c.Conn.Raw())
	if !ok {
		return errors.ErrUnsupported
	}
	return cw.CloseWrite()
}

// isProxyHeaderError tells the PROXY library's refusals from the
// connection's own errors (a client that left, a timeout).
func isProxyHeaderError(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return false
	}
	return errors.Is(err, proxyproto.ErrNoProxyProtocol) || errors.Is(err, proxyproto.ErrSuperfluousProxyHeader) ||
		strings.HasPrefix(err.Error(), "proxyproto:")
}
