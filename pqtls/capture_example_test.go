package pqtls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// A server wraps each conn in a CaptureConn and reads the ClientHello from
// GetConfigForClient, through ClientHelloInfo.Conn.
func ExampleCaptureConn() {
	clientEnd, serverEnd := net.Pipe()
	defer clientEnd.Close()
	defer serverEnd.Close()

	cfg := &tls.Config{
		Certificates: []tls.Certificate{exampleCertificate()},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			ch, err := hello.Conn.(*pqtls.CaptureConn).ClientHello()
			if err != nil {
				return nil, nil // capture is best effort: serve anyway
			}
			fmt.Println("server name:", ch.ServerName)
			for _, ks := range ch.KeyShares {
				fmt.Printf("key share: %s, %d bytes\n", pqtls.GroupName(ks.Group), ks.Size)
			}
			fmt.Println("family:", ch.Family())
			return nil, nil
		},
	}
	done := make(chan error, 1)
	go func() { done <- tls.Server(pqtls.NewCaptureConn(serverEnd, 0), cfg).Handshake() }()
	if err := tls.Client(clientEnd, &tls.Config{ServerName: "pqedge.test", InsecureSkipVerify: true}).Handshake(); err != nil {
		fmt.Println(err)
	}
	<-done
	// Output:
	// server name: pqedge.test
	// key share: X25519MLKEM768, 1216 bytes
	// key share: x25519, 32 bytes
	// family: go
}

// JA4 of a ClientHello captured from headless Chromium.
func ExampleClientHello_JA4() {
	records, err := os.ReadFile("testdata/clienthello/chromium.bin")
	if err != nil {
		fmt.Println(err)
		return
	}
	ch, err := pqtls.ParseClientHelloRecords(records)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ch.JA4(), ch.Family())
	// Output: t13d1517h2_8daaf6152771_cb7bf5808d99 chromium
}

func exampleCertificate() tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"pqedge.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
