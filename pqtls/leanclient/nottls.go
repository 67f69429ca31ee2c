package leanclient

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// NotTLSError says that a server answered the ClientHello with bytes that
// are not a TLS record: it speaks another protocol on that port. It is the
// Err of an *Error of KindNotTLS.
type NotTLSError struct {
	// Protocol is what the answer looks like ("HTTP", "SSH", "SMTP",
	// "FTP", "POP3", "IMAP", "Redis"), or "" when it is not recognised.
	Protocol string
	// Excerpt is the start of the answer, its first line at most
	// maxExcerpt bytes, quoted as a Go string.
	Excerpt string
}

func (e *NotTLSError) Error() string {
	if e.Protocol == "" {
		return fmt.Sprintf("not a TLS server (its answer is not a TLS record); it began with %s", e.Excerpt)
	}
	return fmt.Sprintf("not a TLS server (it answered with %s); its first line: %s", e.Protocol, e.Excerpt)
}

// maxExcerpt bounds how much of a foreign answer an error quotes.
const maxExcerpt = 64

// looksLikeTLS reports whether the first bytes of a server's answer can
// start a TLS record: a content type of RFC 8446 Section 5.1 (20 to 23)
// and a legacy version of the 0x03 family. SSL 2 answers and every
// text protocol fail here at the first or second byte.
func looksLikeTLS(b []byte) bool {
	if len(b) == 0 {
		return true // nothing to judge yet
	}
	if b[0] < recordChangeCipherSpec || b[0] > recordApplicationData {
		return false
	}
	return len(b) < 2 || b[1] == 3
}

// notTLS describes a foreign answer for a NotTLSError.
func notTLS(answer []byte) *NotTLSError {
	line, _, _ := bytes.Cut(answer, []byte("\n"))
	line = bytes.TrimRight(line, "\r")
	if len(line) > maxExcerpt {
		line = line[:maxExcerpt]
	}
	return &NotTLSError{Protocol: identifyProtocol(answer), Excerpt: strconv.Quote(string(line))}
}

// banners are the first bytes by which common services announce
// themselves, either on connect (SSH, SMTP, FTP, POP3, IMAP) or in reply
// to a ClientHello they cannot parse (HTTP's 400, Redis' -ERR).
var banners = []struct {
	prefix, protocol string
}{
	{"HTTP/", "HTTP"},     // RFC 9112 Section 4: status-line
	{"SSH-", "SSH"},       // RFC 4253 Section 4.2: identification string
	{"+OK", "POP3"},       // RFC 1939 Section 4: greeting
	{"* OK", "IMAP"},      // RFC 9051 Section 7.1.1: greeting
	{"* PREAUTH", "IMAP"}, // RFC 9051 Section 7.1.4
	{"-ERR", "Redis"},     // RESP error reply to an unknown command
	{"-NOAUTH", "Redis"},  // RESP, a server with a password
	{"-DENIED", "Redis"},  // RESP, protected mode
	{"RFB ", "VNC"},       // RFC 6143 Section 7.1.1: ProtocolVersion
	{"AMQP", "AMQP"},      // AMQP 0-9-1 protocol header
}

// identifyProtocol names the protocol an answer looks like, or "".
func identifyProtocol(answer []byte) string {
	s := string(answer)
	for _, b := range banners {
		if strings.HasPrefix(s, b.prefix) {
			return b.protocol
		}
	}
	// "220" greets both SMTP (RFC 5321 Section 4.2) and FTP (RFC 959
	// Section 4.2); the text after it usually says which.
	if strings.HasPrefix(s, "220 ") || strings.HasPrefix(s, "220-") {
		upper := strings.ToUpper(firstLine(s))
		switch {
		case strings.Contains(upper, "SMTP") || strings.Contains(upper, "POSTFIX") || strings.Contains(upper, "EXIM"):
			return "SMTP"
		case strings.Contains(upper, "FTP"):
			return "FTP"
		}
		return "SMTP or FTP"
	}
	return ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
