package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/pqedge/pqedge/pqtls"
)

// proxyHeader builds the PROXY protocol header announcing client: its
// remote address is the source, the address it reached us on the
// destination. For version 2 and a TLS client it adds the TLVs of the
// spec's section 2.2 (haproxy.org/download/3.0/doc/proxy-protocol.txt).
func proxyHeader(version int, client net.Conn, st *tls.ConnectionState) (*proxyproto.Header, error) {
	h := proxyproto.HeaderProxyFromAddrs(byte(version), client.RemoteAddr(), client.LocalAddr())
	if h.TransportProtocol == proxyproto.UNSPEC && version == 1 {
		// v1 can only say UNKNOWN for non-IP clients (section 2.1).
		return nil, fmt.Errorf("failed to build PROXY v1 header: client address %v is not TCP", client.RemoteAddr())
	}
	if version != 2 || st == nil {
		return h, nil
	}
	tlvs, err := tlsTLVs(st)
	if err != nil {
		return nil, err
	}
	if err := h.SetTLVs(tlvs); err != nil {
		return nil, fmt.Errorf("failed to build PROXY v2 header: %w", err)
	}
	return h, nil
}

// tlsTLVs describes a TLS connection as PROXY v2 TLVs: PP2_TYPE_SSL with
// version, cipher and group sub-TLVs (section 2.2.5), PP2_TYPE_ALPN
// (2.2.1) and PP2_TYPE_AUTHORITY holding the SNI (2.2.2).
func tlsTLVs(st *tls.ConnectionState) ([]proxyproto.TLV, error) {
	ssl := tlvparse.PP2SSL{
		Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
		// "verify" is zero only when the client presented a certificate
		// that was verified.
		Verify: 1,
		TLV: []proxyproto.TLV{
			// OpenSSL spelling ("TLSv1.3"), which HAProxy sends and
			// upstreams parsing this TLV expect.
			{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv" + strings.TrimPrefix(pqtls.VersionName(st.Version), "TLS "))},
			{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tls.CipherSuiteName(st.CipherSuite))},
		},
	}
	if st.CurveID != 0 {
		ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_GROUP, Value: []byte(pqtls.GroupName(st.CurveID))})
	}
	if len(st.PeerCertificates) > 0 {
		ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
		if len(st.VerifiedChains) > 0 {
			ssl.Verify = 0
		}
	}
	sslTLV, err := ssl.Marshal()
	if err != nil {
		return nil, fmt.Errorf("failed to encode PP2_TYPE_SSL: %w", err)
	}
	tlvs := []proxyproto.TLV{sslTLV}
	if st.NegotiatedProtocol != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(st.NegotiatedProtocol)})
	}
	if st.ServerName != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(st.ServerName)})
	}
	return tlvs, nil
}
