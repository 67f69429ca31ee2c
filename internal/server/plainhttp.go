package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Plain HTTP sent to a TLS port (issue #12, kind 9) is answered with a
// 400 saying to use https, as Go's net/http and nginx do, instead of a
// reset that curl reports as "Empty reply from server". Everything else
// that is not TLS is closed without a byte written: TLS records other
// than a ClientHello, SSLv2 hellos, binary garbage and SSH
// identification strings.
//
// # The rule
//
// A connection gets the answer when crypto/tls refused its first record
// header as not TLS without answering it itself (a tls.RecordHeaderError
// whose Conn is set: an SSLv2 hello or an oversized record gets
// crypto/tls's alert and a nil Conn), and its first bytes, after any
// empty lines (CRLF or a bare LF: RFC 9112 section 2.2 asks a server to
// ignore at least one before the request line), are a method token of
// any case (RFC 9110 section 5.6.2 tchar: letters, digits and
// !#$%&'*+-.^_`|~) followed by a space, or by a tab, vertical tab or form
// feed, which RFC 9112 section 3 lets a recipient take for the space,
// within the first plainHTTPSniffMax bytes. A PROXY protocol header
// (v1's "PROXY ", v2's signature) is not HTTP: its sender is a load
// balancer relaying a TLS client, on a listener without
// proxy_protocol_in, and the connection is closed unanswered and counted
// as reason="proxy_protocol" (classifyFailure). A token that starts with "SSH-" is an
// SSH identification string (RFC 4253 section 4.2), not a method, and is
// never answered, with or without its comment after a space: the SSH
// client ignores lines before the server's banner anyway.
//
// What crypto/tls read is kept by edgeConn.notePrefix; when it does not
// reach the space yet (a method split across segments, or longer than
// the 5-byte record header crypto/tls waits for), more is read, up to
// plainHTTPSniffMax bytes in all and for at most plainHTTPSniffTimeout.
// Every other case is counted as
// pqedge_handshake_failures_total{reason="not_tls"}, as is a connection
// whose first record is a TLS alert (crypto/tls reads an alert before a
// ClientHello, to see a client's refusal): the client sent no ClientHello,
// and whatever its alert says, it is not about a certificate it never got.

// recordTypeHandshake is the first byte of a TLS handshake record (RFC
// 8446 section 5.1), which a ClientHello is sent in.
const recordTypeHandshake = 22

// recordTypeAlert is the first byte of a TLS alert record (RFC 8446
// section 5.1).
const recordTypeAlert = 21

// proxyV1Start and proxyV2Signature begin the two versions of a PROXY
// protocol header (haproxy.org/download/3.0/doc/proxy-protocol.txt,
// sections 2.1 and 2.2).
const (
	proxyV1Start     = "PROXY "
	proxyV2Signature = "\r\n\r\n\x00\r\nQUIT\n"
)

// looksLikeProxyHeader reports whether b, a connection's first bytes
// (at least a record header's 5), begin a PROXY protocol header: as far
// as b goes, v1's "PROXY " or v2's 12-byte signature, which no TLS
// record and no HTTP request line starts with.
func looksLikeProxyHeader(b []byte) bool {
	if len(b) < 5 {
		return false
	}
	for _, sig := range []string{proxyV1Start, proxyV2Signature} {
		if n := min(len(b), len(sig)); string(b[:n]) == sig[:n] {
			return true
		}
	}
	return false
}

// firstBytes is what is known of a connection's first bytes: prefix, as
// notePrefix kept it, or the record header crypto/tls refused when
// that is longer.
func firstBytes(prefix []byte, err error) []byte {
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && len(prefix) < len(rhe.RecordHeader) {
		return rhe.RecordHeader[:]
	}
	return prefix
}

// knownStart is firstBytes of c, or, when its first bytes began a
// handshake record, that record's header and its first message's type
// as far as they came.
func (c *edgeConn) knownStart(err error) []byte {
	if c.recordSeen > 0 {
		return c.recordStart[:c.recordSeen]
	}
	return firstBytes(c.prefix, err)
}

// recordHeaderLen is a TLS record header's length (RFC 8446 section 5.1).
const recordHeaderLen = 5

// typeClientHello is the handshake message type of a ClientHello (RFC 8446
// section 4).
const typeClientHello = 1

// beginsOtherMessage reports whether first, a connection's first bytes,
// are a handshake record that begins with a message other than a
// ClientHello (a ServerHello, a Finished, an unknown type): no TLS client
// starts so (RFC 8446 section 4.1.2), whatever crypto/tls made of it
// (decode_error for a message it could not parse, unexpected_message for
// one it could).
func beginsOtherMessage(first []byte) bool {
	return len(first) > recordHeaderLen && first[0] == recordTypeHandshake && first[recordHeaderLen] != typeClientHello
}

// plainHTTPSniffMax caps the first bytes of a connection that are kept and
// read to tell a plain HTTP request line from other bytes: room for a few
// empty lines and the longest registered method (17 bytes,
// "UPDATEREDIRECTREF") with its space.
const plainHTTPSniffMax = 64

// plainHTTPSniffTimeout bounds the wait for the rest of a method token
// that crypto/tls's first read did not hold: a client that stops inside
// it is closed unanswered.
const plainHTTPSniffTimeout = time.Second

// plainHTTPAnswerTimeout bounds writing the 400 answer to a client that
// sent plain HTTP to a TLS port and then stopped reading.
const plainHTTPAnswerTimeout = time.Second

// plainHTTPAnswer is the whole answer: HTTP/1.0, so that any HTTP/1
// client reads it, and closed after.
const plainHTTPAnswer = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" +
	"400 Bad Request: this port speaks HTTPS; use an https:// URL.\n"

// notePrefix keeps the first bytes the handshake reads, b, when they do
// not start a TLS handshake record, up to plainHTTPSniffMax: crypto/tls
// exposes only the 5-byte record header it refused. A ClientHello costs a
// comparison on its first read and nothing after.
func (c *edgeConn) notePrefix(b []byte) {
	if c.prefixDone || len(b) == 0 {
		return
	}
	if c.recordSeen > 0 || len(c.prefix) == 0 && b[0] == recordTypeHandshake {
		// The record header and the type of the message it begins with,
		// in as many reads as they come.
		c.recordSeen += copy(c.recordStart[c.recordSeen:], b)
		c.prefixDone = c.recordSeen == len(c.recordStart)
		return
	}
	if c.prefix == nil {
		c.prefix = make([]byte, 0, plainHTTPSniffMax)
	}
	c.prefix = append(c.prefix, b[:min(len(b), plainHTTPSniffMax-len(c.prefix))]...)
	c.prefixDone = len(c.prefix) == plainHTTPSniffMax
}

// answerPlainHTTP writes the 400 answer to c when the handshake's error
// and the connection's first bytes (prefix, kept by notePrefix) say its
// client sent plain HTTP, reading at most plainHTTPSniffMax bytes in all
// and waiting at most plainHTTPSniffTimeout (and not past deadline, the
// handshake's) for the rest of a method token. It reports whether it
// answered.
func answerPlainHTTP(c net.Conn, prefix []byte, err error, deadline time.Time) bool {
	var rhe tls.RecordHeaderError
	if !errors.As(err, &rhe) || rhe.Conn == nil {
		// Not a refused first record, or one crypto/tls answered with
		// an alert itself: an SSLv2 hello, an oversized record.
		return false
	}
	b := firstBytes(prefix, err)
	v := sniffRequestLine(b)
	if v == sniffMore {
		buf := make([]byte, plainHTTPSniffMax)
		n := copy(buf, b)
		if d := time.Now().Add(plainHTTPSniffTimeout); d.Before(deadline) {
			deadline = d
		}
		c.SetReadDeadline(deadline)
		for v == sniffMore && n < len(buf) {
			m, err := c.Read(buf[n:])
			n += m
			v = sniffRequestLine(buf[:n])
			if err != nil {
				break
			}
		}
	}
	if v != sniffHTTP {
		return false
	}
	c.SetWriteDeadline(time.Now().Add(plainHTTPAnswerTimeout))
	if _, err := io.WriteString(c, plainHTTPAnswer); err == nil {
		lingerClose(c)
	}
	return true
}

// plainHTTPLinger and plainHTTPLingerMax bound the lingering close after
// the plain-HTTP answer: how long, and how many bytes, of what the client
// still sends are read and thrown away.
const (
	plainHTTPLinger    = 250 * time.Millisecond
	plainHTTPLingerMax = 256 << 10
)

// lingerClose half-closes c after an answer and reads what the client
// still sends until it closes too, for at most plainHTTPLinger and
// plainHTTPLingerMax bytes (RFC 9112 section 9.6): the kernel answers a
// close with unread bytes in the socket with a reset, and a client that
// sent more than the first reads took (a long request line, many header
// fields, a body) saw "connection reset by peer" (curl: exit 56) where
// the 400 was, or lost the 400 itself if the reset came before it read.
// The caller closes c.
func lingerClose(c net.Conn) {
	cw, ok := under[interface{ CloseWrite() error }](c)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(plainHTTPLinger))
	io.CopyN(io.Discard, c, plainHTTPLingerMax)
}

// sniffVerdict is what the first bytes of a connection say of it.
type sniffVerdict int

const (
	sniffNotHTTP sniffVerdict = iota // not an HTTP request line
	sniffMore                        // so far empty lines and a method token: read on
	sniffHTTP                        // a method token and its space
)

// sniffRequestLine judges the first bytes of a connection, b, by the rule
// in this file's comment.
func sniffRequestLine(b []byte) sniffVerdict {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++ // empty lines, RFC 9112 section 2.2
	}
	start := i
	for i < len(b) && httpguts.IsTokenRune(rune(b[i])) {
		i++
	}
	method := b[start:i]
	if len(method) >= 4 && string(method[:4]) == "SSH-" {
		return sniffNotHTTP // RFC 4253 section 4.2
	}
	switch {
	case i == len(b):
		return sniffMore
	case !requestLineSpace(b[i]) || len(method) == 0:
		return sniffNotHTTP
	}
	return sniffHTTP
}

// requestLineSpace reports whether c may separate a request line's method
// from its target: SP, or HTAB, VT or FF, which RFC 9112 section 3 lets a
// recipient parse as SP (a bare CR too, but CR begins a line's end here).
func requestLineSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\v' || c == '\f'
}
