package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// UpstreamTLS configures TLS to the https:// upstreams of a pool, the
// origin leg of a request. The zero value verifies origins against the
// system roots under their own host name, presents no client certificate,
// and prefers post-quantum key exchange without requiring it.
//
// The groups offered are those of the pqtls presets: pq-preferred
// (X25519MLKEM768 first, then the other hybrids, then x25519 and
// secp256r1; TLS 1.2 and 1.3), or with PQRequired pq-only (the three
// hybrids, TLS 1.3 only: the hybrid groups exist only in TLS 1.3,
// draft-ietf-tls-ecdhe-mlkem).
type UpstreamTLS struct {
	// RootCAs verify the origins' certificates; nil means the system roots.
	// Given, they replace the system roots: a private origin CA does not
	// make every public CA an authority for the pool too.
	RootCAs []*x509.Certificate
	// ServerName is the name sent in SNI and that the origin's certificate
	// must cover; "" means each upstream's own host (an IP address host
	// sends no SNI, RFC 6066 section 3, and is checked against the
	// certificate's IP addresses).
	ServerName string
	// Certificate is presented when an origin asks for a client
	// certificate (classical or ML-DSA; wrap an ML-DSA key with
	// certs.WrapSigner for the fast signer). nil presents none.
	Certificate *tls.Certificate
	// PQRequired offers only the hybrid post-quantum groups: an origin
	// that will not negotiate one fails the handshake, which counts
	// against that upstream like any connect failure.
	PQRequired bool
}

// isZero reports whether t has no setting, which a pool without https://
// upstreams requires.
func (t *UpstreamTLS) isZero() bool {
	return t.RootCAs == nil && t.ServerName == "" && t.Certificate == nil && !t.PQRequired
}

// id digests everything that decides a handshake's outcome, so the health
// registry shares an upstream's state only between pools that reach it the
// same way (a reload that changes the CA gets a state of its own).
func (t *UpstreamTLS) id() [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%q %t %d\n", t.ServerName, t.PQRequired, len(t.RootCAs))
	for _, c := range t.RootCAs {
		fmt.Fprintf(h, "%d:", len(c.Raw))
		h.Write(c.Raw)
	}
	if t.Certificate != nil {
		for _, der := range t.Certificate.Certificate {
			fmt.Fprintf(h, "%d:", len(der))
			h.Write(der)
		}
	}
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

// upstreamTLS is how one https:// upstream is reached: its client config
// and whether a hybrid group is required.
type upstreamTLS struct {
	conf       *tls.Config
	pqRequired bool
}

// upstreamTLSGroups are the groups and minimum version an origin leg
// offers, from the one table of presets in pqtls.
func upstreamTLSGroups(pqRequired bool) ([]tls.CurveID, uint16) {
	name := pqtls.PresetPQPreferred
	if pqRequired {
		name = pqtls.PresetPQOnly
	}
	p, err := pqtls.LookupPreset(name)
	if err != nil {
		panic("proxy: pqtls has no preset " + name) // a build without the presets is broken
	}
	return p.Groups, p.MinVersion
}

// clientConfigs returns a function that builds the client config of an
// upstream whose host is host, sharing one root pool between them.
func (t *UpstreamTLS) clientConfigs() func(host string) *upstreamTLS {
	var roots *x509.CertPool
	if t.RootCAs != nil {
		roots = x509.NewCertPool()
		for _, c := range t.RootCAs {
			roots.AddCert(c)
		}
	}
	groups, minVersion := upstreamTLSGroups(t.PQRequired)
	return func(host string) *upstreamTLS {
		c := &tls.Config{
			RootCAs:          roots,
			ServerName:       t.ServerName,
			CurvePreferences: groups,
			MinVersion:       minVersion,
			// The proxy speaks HTTP/1.1 to upstreams; saying so lets an
			// origin that insists on ALPN accept the connection.
			NextProtos: []string{"http/1.1"},
			// No session resumption: keep-alive connections already
			// spare most handshakes, and each new connection then shows
			// what the origin negotiates today.
			SessionTicketsDisabled: true,
		}
		if c.ServerName == "" {
			c.ServerName = host
		}
		if t.Certificate != nil {
			c.Certificates = []tls.Certificate{*t.Certificate}
		}
		return &upstreamTLS{conf: c, pqRequired: t.PQRequired}
	}
}

// handshake runs the client handshake on c, a new connection to the
// upstream addr, within timeout (a silent origin must not hold the request
// past it). It closes c on failure; the error is an *UpstreamTLSError.
func (ut *upstreamTLS) handshake(ctx context.Context, c net.Conn, addr string, timeout time.Duration) (*tls.Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := hctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return nil, &UpstreamTLSError{Upstream: addr, Reason: TLSFailureOther, Err: err}
	}
	tc := tls.Client(c, ut.conf)
	err := tc.HandshakeContext(hctx)
	if err == nil && ut.pqRequired && !pqtls.IsPostQuantumGroup(tc.ConnectionState().CurveID) {
		// Cannot happen with only hybrids offered (RFC 8446 section
		// 4.2.8: the server picks one of the client's groups); checked
		// anyway, since the promise is what pq_required is for.
		err = classicalGroupError{tc.ConnectionState().CurveID}
	}
	if err == nil {
		err = c.SetDeadline(time.Time{})
	}
	if err != nil {
		c.Close()
		return nil, &UpstreamTLSError{Upstream: addr, Reason: classifyUpstreamTLS(err, ut.pqRequired), Err: err, pqRequired: ut.pqRequired}
	}
	return tc, nil
}

// lateFailure turns err, an error on a connection to the https:// upstream
// addr after the handshake returned, into an *UpstreamTLSError when it is
// an alert from the origin, else returns nil. In TLS 1.3 the client's
// handshake is over before the server has checked the client's
// certificate (RFC 8446 section 4.4.2: its verdict comes as an alert in
// place of the first response), so that refusal surfaces here.
func (ut *upstreamTLS) lateFailure(addr string, err error) *UpstreamTLSError {
	if _, ok := remoteAlert(err); !ok {
		return nil
	}
	return &UpstreamTLSError{Upstream: addr, Reason: classifyUpstreamTLS(err, ut.pqRequired), Err: err, pqRequired: ut.pqRequired}
}

// Reasons an origin-leg handshake failed, the reason label of metrics.
const (
	// TLSFailureCertificate: the origin's certificate did not verify
	// against the pool's roots and server name.
	TLSFailureCertificate = "certificate"
	// TLSFailureClientCertificate: the origin refused the client
	// certificate, or asked for one and got none.
	TLSFailureClientCertificate = "client_certificate"
	// TLSFailureNoCommonGroup: post-quantum key exchange is required and
	// the origin accepted none of the hybrid groups.
	TLSFailureNoCommonGroup = "no_common_group"
	// TLSFailureVersion: no TLS version in common (with PQRequired, the
	// origin does not speak TLS 1.3).
	TLSFailureVersion = "version"
	// TLSFailureTimeout: the handshake did not finish in time.
	TLSFailureTimeout = "timeout"
	// TLSFailureOther is anything else (the error says what).
	TLSFailureOther = "other"
)

// UpstreamTLSError is a failed TLS handshake with an https:// upstream. It
// counts against the upstream: an origin that cannot complete the
// handshake pqedge is configured for is as unusable as one that refuses
// connections.
type UpstreamTLSError struct {
	Upstream string // configured address, "https://host:port"
	Reason   string // one of the TLSFailure* classes
	Err      error  // crypto/tls's error

	pqRequired bool
}

func (e *UpstreamTLSError) Error() string {
	why := ""
	switch e.Reason {
	case TLSFailureCertificate:
		why = "the origin's certificate did not verify against the pool's roots and server name: "
	case TLSFailureClientCertificate:
		why = "the origin refused the client certificate (or wanted one and got none): "
	case TLSFailureNoCommonGroup:
		groups, _ := upstreamTLSGroups(true)
		names := make([]string, len(groups))
		for i, g := range groups {
			names[i] = pqtls.GroupName(g)
		}
		why = "pq_required: the origin accepted none of the post-quantum groups offered (" + strings.Join(names, ", ") + "): "
	case TLSFailureVersion:
		if e.pqRequired {
			why = "pq_required: the origin does not speak TLS 1.3, which post-quantum key exchange needs: "
		} else {
			why = "no TLS version in common with the origin: "
		}
	case TLSFailureTimeout:
		why = "timed out: "
	}
	return "TLS handshake failed: " + why + e.Err.Error()
}

func (e *UpstreamTLSError) Unwrap() error { return e.Err }

// classifyUpstreamTLS puts a failed origin handshake in one class. Alerts
// the origin sent say most (RFC 8446 section 6.2); crypto/tls reports them
// as "remote error" net.OpErrors.
func classifyUpstreamTLS(err error, pqRequired bool) string {
	var cve *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case errors.As(err, &cve):
		return TLSFailureCertificate
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return TLSFailureTimeout
	}
	var cge classicalGroupError
	if errors.As(err, &cge) {
		return TLSFailureNoCommonGroup
	}
	alert, ok := remoteAlert(err)
	if !ok {
		return TLSFailureOther
	}
	switch alert {
	case 40, 71: // handshake_failure, insufficient_security
		// What OpenSSL and Go send when no group is shared; with
		// classical groups offered too, it is some other mismatch.
		if pqRequired {
			return TLSFailureNoCommonGroup
		}
	case 70: // protocol_version
		return TLSFailureVersion
	case 42, 43, 44, 45, 46, 48, 49, 116:
		// bad, unsupported, revoked, expired or unknown certificate,
		// unknown_ca, access_denied, certificate_required: the server
		// sends these about the client's certificate.
		return TLSFailureClientCertificate
	}
	return TLSFailureOther
}

// classicalGroupError is a handshake that completed with a classical group
// where a hybrid one was required.
type classicalGroupError struct{ group tls.CurveID }

func (e classicalGroupError) Error() string {
	return "the origin negotiated " + pqtls.GroupName(e.group)
}

// remoteAlert returns the alert an origin sent, from the error crypto/tls
// returns for it (a *net.OpError with Op "remote error" whose Err is an
// unexported alert type that prints like tls.AlertError).
func remoteAlert(err error) (tls.AlertError, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	msg := op.Err.Error()
	for a := range 256 {
		if tls.AlertError(a).Error() == msg {
			return tls.AlertError(a), true
		}
	}
	return 0, false
}

// UpstreamHandshake is one TLS handshake with an https:// upstream on the
// data path (health checks are not reported), for metrics.
type UpstreamHandshake struct {
	Pool     string
	Upstream string // configured address
	// Facts are what the handshake negotiated (Signature stays empty: a
	// client does not learn the scheme the origin signed with); zero when
	// Err is set.
	Facts    HandshakeFacts
	Duration time.Duration
	// Err is why the handshake failed; nil when it succeeded. A handshake
	// abandoned because the client left is not reported. In TLS 1.3 an
	// origin refuses a client certificate only after the client's side of
	// the handshake is done: that connection is reported once as a
	// success, then as a failure (TLSFailureClientCertificate) when its
	// first request meets the refusal.
	Err *UpstreamTLSError
}
