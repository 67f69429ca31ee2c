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
// destination. For version 2 and a TLS client (facts not nil) it adds the
// TLVs of the spec's section 2.2 (haproxy.org/download/3.0/doc/proxy-protocol.txt).
func proxyHeader(version int, client net.Conn, facts *HandshakeFacts) (*proxyproto.Header, error) {
	h := proxyproto.HeaderProxyFromAddrs(byte(version), client.RemoteAddr(), client.LocalAddr())
	if h.TransportProtocol == proxyproto.UNSPEC && version == 1 {
		// v1 can only say UNKNOWN for non-IP clients (section 2.1).
		return nil, fmt.Errorf("failed to build PROXY v1 header: client address %v is not TCP", client.RemoteAddr())
	}
	if version != 2 || facts == nil {
		return h, nil
	}
	tlvs, err := tlsTLVs(facts)
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
func tlsTLVs(f *HandshakeFacts) ([]proxyproto.TLV, error) {
	ssl := tlvparse.PP2SSL{
		Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
		// "verify" is zero only when the client presented a certificate
		// that was verified; pqedge asks for none.
		Verify: 1,
		TLV: []proxyproto.TLV{
			// OpenSSL spelling ("TLSv1.3"), which HAProxy sends and
			// upstreams parsing this TLV expect.
			{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv" + strings.TrimPrefix(f.Version, "TLS "))},
			{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(f.Cipher)},
		},
	}
	if f.Group != "" {
		ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_GROUP, Value: []byte(f.Group)})
	}
	sslTLV, err := ssl.Marshal()
	if err != nil {
		return nil, fmt.Errorf("failed to encode PP2_TYPE_SSL: %w", err)
	}
	tlvs := []proxyproto.TLV{sslTLV}
	if f.ALPN != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(f.ALPN)})
	}
	if f.ServerName != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(f.ServerName)})
	}
	return tlvs, nil
}

// factsOf reads the facts off a TLS connection state, for a connection
// handed in without them.
func factsOf(st *tls.ConnectionState) HandshakeFacts {
	f := HandshakeFacts{
		Version: pqtls.VersionName(st.Version), Cipher: pqtls.CipherSuiteName(st.CipherSuite),
		PQ: pqtls.IsPostQuantumGroup(st.CurveID), ALPN: st.NegotiatedProtocol, ServerName: st.ServerName,
	}
	if st.CurveID != 0 {
		f.Group = pqtls.GroupName(st.CurveID)
	}
	return f
}
