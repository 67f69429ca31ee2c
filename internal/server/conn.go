package server

import (
	"crypto"
	"crypto/tls"
	"sync"

	"github.com/pqedge/pqedge/pqtls"
)

// edgeConn is what crypto/tls sees as the connection: the capture of the
// ClientHello plus what the TLS callbacks decide during the handshake, so
// the accept loop can record it afterwards. crypto/tls passes it back in
// ClientHelloInfo.Conn.
type edgeConn struct {
	*pqtls.CaptureConn
	gen      *generation
	listener *listenerRuntime

	mu     sync.Mutex       // guards the fields below
	site   *siteRuntime     // set by GetConfigForClient
	cert   *tls.Certificate // set by GetCertificate
	record *pqtls.Handshake // set once the handshake succeeded
}

func (c *edgeConn) chosen() (*siteRuntime, *tls.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.site, c.cert
}

// leafKey returns the public key of the certificate chosen for the handshake.
func leafKey(cert *tls.Certificate) crypto.PublicKey {
	if cert == nil {
		return nil
	}
	if cert.Leaf != nil {
		return cert.Leaf.PublicKey
	}
	if s, ok := cert.PrivateKey.(crypto.Signer); ok {
		return s.Public()
	}
	return nil
}
