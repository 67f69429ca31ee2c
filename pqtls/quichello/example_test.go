package quichello_test

import (
	"crypto/tls"
	"fmt"
	"log"
	"net"

	"github.com/pqedge/pqedge/pqtls/quichello"
	"github.com/quic-go/quic-go"
)

// A QUIC server that knows, in GetConfigForClient, the whole ClientHello
// of the connection it configures: its key shares, extension order and
// JA4, which crypto/tls does not expose.
func ExampleTracker() {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	tracker := &quichello.Tracker{}
	tr := &quic.Transport{Conn: quichello.NewPacketConn(udp, tracker)}
	conf := &tls.Config{
		NextProtos: []string{"h3"},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			// quic-go puts the client's UDP address in hello.Conn.
			ch, err := tracker.ClientHello(hello.Conn.RemoteAddr())
			if err != nil {
				return nil, nil // serve anyway: recording never fails a handshake
			}
			fmt.Println(ch.JA4(), ch.KeyShares, ch.Wire.Packets, "Initial packets")
			return nil, nil
		},
	}
	ln, err := tr.Listen(conf, &quic.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
}
