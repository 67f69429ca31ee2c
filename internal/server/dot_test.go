package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pqedge/pqedge/internal/peers"
)

// dotAnswer is the TXT record the test resolver answers every query with.
const dotAnswer = "pqedge-dot-ok"

// dnsResolver is a DNS-over-TCP upstream (RFC 1035 section 4.2.2: each
// message after a two-byte length) that answers one query per connection
// and closes it, as a resolver closing an idle connection would.
func dnsResolver(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go answerOne(t, c)
		}
	}()
	return ln.Addr().String()
}

func answerOne(t *testing.T, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	q, err := readDNS(c)
	if err != nil {
		return // a handshake-only client: nothing to answer
	}
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = append(r.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{dotAnswer}})
	if err := writeDNS(c, r); err != nil {
		t.Errorf("resolver: %v", err)
	}
}

func readDNS(r io.Reader) (*dns.Msg, error) {
	var n uint16
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(buf)
}

// dnsQuery is a TXT query for dot.example in DNS-over-TCP framing.
func dnsQuery(t *testing.T) []byte {
	m := new(dns.Msg)
	m.SetQuestion("dot.example.", dns.TypeTXT)
	var b bytes.Buffer
	if err := writeDNS(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeDNS(w io.Writer, m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
	return err
}

const dotConfig = `
data_dir = "{{DATA}}/data"
[log]
access = false
[[listener]]
name = "dot"
address = "127.0.0.1:0"
kind = "stream"
site = "local"
pool = "dns"
` + inspectSite + `[[pool]]
name = "dns"
upstreams = ["%s"]
`

// TestDoTALPN: a stream listener with the default alpn negotiates "dot"
// (RFC 7858 section 3.2) with a client that offers it, serves a client that
// offers no ALPN at all, and refuses one offering only h2 with
// no_application_protocol (RFC 7301 section 3.2): a DNS stream is not
// HTTP/2. Go's client here; OpenSSL's s_client below.
func TestDoTALPN(t *testing.T) {
	ts := startServer(t, fmt.Sprintf(dotConfig, dnsResolver(t)))
	tests := []struct {
		name     string
		offer    []string
		wantALPN string
		refused  bool
	}{
		{name: "no ALPN", offer: nil, wantALPN: ""},
		{name: "dot", offer: []string{"dot"}, wantALPN: "dot"},
		{name: "h2 first, then dot", offer: []string{"h2", "dot"}, wantALPN: "dot"},
		{name: "h2 only", offer: []string{"h2"}, refused: true},
		{name: "http/1.1 only", offer: []string{"http/1.1"}, refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", ts.addr("dot"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: tt.offer})
			if tt.refused {
				if err == nil {
					c.Close()
					t.Fatalf("offering %q: handshake succeeded with ALPN %q", tt.offer, c.ConnectionState().NegotiatedProtocol)
				}
				if !strings.Contains(err.Error(), "no application protocol") {
					t.Errorf("offering %q: %v, want a no_application_protocol alert", tt.offer, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("offering %q: %v", tt.offer, err)
			}
			defer c.Close()
			if got := c.ConnectionState().NegotiatedProtocol; got != tt.wantALPN {
				t.Errorf("negotiated %q, want %q", got, tt.wantALPN)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(dnsQuery(t)); err != nil {
				t.Fatal(err)
			}
			r, err := readDNS(c)
			if err != nil {
				t.Fatalf("no DNS answer: %v", err)
			}
			if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), dotAnswer) {
				t.Errorf("answer %v", r.Answer)
			}
		})
	}
}

// TestDoTALPNWithOpenSSL: OpenSSL 3.5's s_client offering "dot" (as kdig
// and dig +tls do) negotiates it and gets the resolver's answer; offering
// h2 it is refused.
func TestDoTALPNWithOpenSSL(t *testing.T) {
	trixie := peers.Trixie(t)
	ts := startServer(t, fmt.Sprintf(dotConfig, dnsResolver(t)))
	tests := []struct {
		alpn    string
		refused bool
	}{
		{alpn: "dot"},
		{alpn: "h2", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.alpn, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// -ign_eof: read until the resolver closes the stream after its
			// answer, instead of leaving when stdin (the query) ends.
			cmd := trixie.Command(ctx, "openssl", "s_client", "-connect", ts.addr("dot"), "-servername", "localhost",
				"-alpn", tt.alpn, "-ign_eof")
			cmd.Stdin = bytes.NewReader(dnsQuery(t))
			out, err := cmd.CombinedOutput()
			text := string(out)
			if tt.refused {
				if err == nil || !strings.Contains(text, "no application protocol") {
					t.Errorf("s_client -alpn h2 was not refused with no_application_protocol (%v):\n%s", err, text)
				}
				return
			}
			if err != nil {
				t.Fatalf("s_client -alpn dot: %v\n%s", err, text)
			}
			if !strings.Contains(text, "ALPN protocol: dot") {
				t.Errorf("s_client did not negotiate dot:\n%s", text)
			}
			if !strings.Contains(text, dotAnswer) {
				t.Errorf("s_client got no DNS answer through pqedge:\n%s", text)
			}
		})
	}
}
