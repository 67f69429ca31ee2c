package h1guard

import (
	"fmt"
	"net/http"
)

// parser follows the client's side of an HTTP/1.x connection byte by byte:
// request line, header fields, and the body each head announces, then the
// next request (RFC 9112 Sections 2-7). It keeps no copy of what it reads,
// only the framing facts of the current message, so its memory is the size
// of the struct whatever the client sends.
//
// Where RFC 9112 lets a recipient be lenient (a bare LF as a line end,
// obs-fold, whitespace around a chunk size), it is not: a message is either
// framed beyond doubt, as net/http will read it, or refused.
type parser struct {
	state     state
	maxHead   int // bytes a head may take, request line included
	maxTarget int // bytes a request target may take; 0: only maxHead bounds it
	maxFields int // field lines a head (or trailer section) may have; 0: no cap
	head      int // bytes of the current head (or trailer section) so far
	fields    int // field lines of the current head (or trailer section) so far

	// Request line.
	tokenLen int     // bytes of the method, target or version so far
	version  [8]byte // "HTTP/1.1"
	http10   bool

	// The header field being read.
	trailer  bool // a field of the chunked body's trailer section
	nameLen  int
	name     [len("transfer-encoding")]byte // enough to tell the framing fields
	nameLong bool
	field    field
	value    [len("chunked")]byte // a Transfer-Encoding value, lower-cased
	valueLen int
	valueBad bool // the value is not what the framing field may hold
	owsRun   int  // trailing OWS not yet known to be inside the value
	clDigits int  // digits of a Content-Length value
	clValue  uint64

	// Framing facts of the current head.
	clCount   int
	clFirst   uint64
	clDiffers bool
	clBad     bool
	teCount   int
	teChunked bool // the last Transfer-Encoding field said exactly "chunked"

	// Body.
	remaining   uint64 // bytes of Content-Length body or chunk data left
	chunkDigits int
	chunkLine   int   // bytes of the chunk-size line so far
	requests    int   // messages read to their end
	offset      int64 // bytes fed so far
	endAt       int64 // offset just after the last message read to its end
}

type state uint8

const (
	sRequestStart state = iota
	sMethod
	sTarget
	sVersion
	sVersionLF
	sLineStart // start of a header line (or the blank line)
	sName
	sValue
	sValueLF
	sHeadLF // the CR of the blank line was read
	sBodyLength
	sChunkSize
	sChunkOWS // whitespace after the chunk size
	sChunkExt
	sChunkLF
	sChunkData
	sChunkDataCR
	sChunkDataLF
	sTrailerStart
	sTrailerLF
)

// field is a header field the framing depends on.
type field uint8

const (
	fieldOther field = iota
	fieldContentLength
	fieldTransferEncoding
)

// maxChunkLine mirrors net/http's limit on a chunk-size line (its
// internal maxLineLength): longer ones fail there too.
const maxChunkLine = 4096

// refusal is why a request is refused; the byte at which it was found is
// not delivered.
type refusal struct {
	// status is the answer the guard writes itself (414); 0 leaves the
	// answer to net/http, which fails the read with 400.
	status int
	// kind is one fixed phrase per class of mistake, never a byte of the
	// client's: it becomes a metric label (Options.OnRefuse), and a label
	// a client could choose would let it mint a time series per request.
	kind string
	// reason is kind with the offending detail, for the error.
	reason string
}

func (r *refusal) Error() string { return r.reason }

// refuse is a refusal whose reason is its kind.
func refuse(kind string) *refusal { return &refusal{kind: kind, reason: kind} }

// refusef is a refusal of a fixed kind whose reason also names what the
// client sent (a byte, a version).
func refusef(kind, format string, args ...any) *refusal {
	return &refusal{kind: kind, reason: fmt.Sprintf(format, args...)}
}

// feed runs b through the parser. It returns how many bytes of b were
// read before a refusal (all of them when refusal is nil).
func (p *parser) feed(b []byte) (int, *refusal) {
	for i, c := range b {
		p.offset++
		if r := p.step(c); r != nil {
			return i, r
		}
	}
	return len(b), nil
}

func (p *parser) step(c byte) *refusal {
	switch p.state {
	case sRequestStart, sMethod, sTarget, sVersion, sVersionLF, sLineStart, sName, sValue, sValueLF, sHeadLF,
		sTrailerStart, sTrailerLF:
		p.head++
		if p.head > p.maxHead {
			return refusef("header block too long", "header block longer than %d bytes", p.maxHead)
		}
	}
	switch p.state {
	case sRequestStart:
		p.resetHead()
		if c == '\r' || c == '\n' {
			// RFC 9112 Section 2.2 lets a server skip an empty line
			// here; net/http does not, and neither may this parser.
			return refuse("empty request line")
		}
		p.state = sMethod
		return p.method(c)
	case sMethod:
		return p.method(c)
	case sTarget:
		switch {
		case c == ' ':
			if p.tokenLen == 0 {
				return refuse("empty request target")
			}
			p.state, p.tokenLen = sVersion, 0
		case c < 0x21 || c == 0x7f:
			return refusef("invalid byte in the request target", "byte 0x%02x in the request target", c)
		default:
			p.tokenLen++
			if p.maxTarget > 0 && p.tokenLen > p.maxTarget {
				// RFC 9112 Section 3: a target longer than the server
				// will parse MUST be answered 414. net/http would
				// answer 431 once the whole head is over its limit.
				return &refusal{status: 414, kind: "request target too long",
					reason: fmt.Sprintf("request target longer than %d bytes", p.maxTarget)}
			}
		}
	case sVersion:
		if c == '\r' {
			v := string(p.version[:p.tokenLen])
			if p.tokenLen != len(p.version) || v != "HTTP/1.1" && v != "HTTP/1.0" {
				return refusef("unsupported version", "unsupported version %q", v)
			}
			p.http10 = v == "HTTP/1.0"
			p.state = sVersionLF
			return nil
		}
		if c == '\n' {
			return refuse("bare LF")
		}
		if p.tokenLen == len(p.version) {
			return refuse("malformed version")
		}
		p.version[p.tokenLen] = c
		p.tokenLen++
	case sVersionLF, sValueLF, sChunkLF, sChunkDataLF:
		if c != '\n' {
			return refuse("CR not followed by LF")
		}
		switch p.state {
		case sVersionLF:
			p.state = sLineStart
		case sValueLF:
			p.endField()
			p.state = sLineStart
			if p.trailer {
				p.state = sTrailerStart
			}
		case sChunkLF:
			p.endChunkLine()
		case sChunkDataLF:
			p.state, p.chunkDigits, p.chunkLine = sChunkSize, 0, 0
		}
	case sLineStart, sTrailerStart:
		switch {
		case c == '\r':
			if p.state == sLineStart {
				p.state = sHeadLF
			} else {
				p.state = sTrailerLF
			}
		case c == ' ' || c == '\t':
			// RFC 9112 Section 5.2: obs-fold may be rejected. net/http
			// joins it silently, so a folded Transfer-Encoding would
			// frame the body one way there and another way elsewhere.
			return refuse("obsolete line folding")
		case c == '\n':
			return refuse("bare LF")
		default:
			if p.fields++; p.maxFields > 0 && p.fields > p.maxFields {
				if p.state == sTrailerStart {
					// Mid-body: net/http's read of the body fails,
					// and the handler answers 400.
					return refusef("too many trailer fields", "more than %d trailer fields", p.maxFields)
				}
				// RFC 6585 Section 5. Refused here, before net/http
				// parses each field into its map: a head of 16,000
				// four-byte fields fits the byte limit.
				return &refusal{status: http.StatusRequestHeaderFieldsTooLarge, kind: "too many header fields",
					reason: fmt.Sprintf("more than %d header fields", p.maxFields)}
			}
			p.inTrailer(p.state == sTrailerStart)
			p.state = sName
			return p.nameByte(c)
		}
	case sName:
		return p.nameByte(c)
	case sValue:
		return p.valueByte(c)
	case sHeadLF:
		if c != '\n' {
			return refuse("CR not followed by LF")
		}
		return p.endHead()
	case sBodyLength:
		p.remaining--
		if p.remaining == 0 {
			p.endMessage()
		}
	case sChunkSize:
		p.chunkLine++
		switch {
		case isHex(c):
			if p.chunkDigits == 16 {
				return refuse("chunk size too large")
			}
			p.chunkDigits++
			p.remaining = p.remaining<<4 | uint64(unhex(c))
		case p.chunkDigits == 0:
			return refuse("chunk size is not hexadecimal")
		case c == ';':
			p.state = sChunkExt
		case c == ' ' || c == '\t':
			p.state = sChunkOWS
		case c == '\r':
			p.state = sChunkLF
		default:
			return refusef("invalid byte in a chunk size", "byte 0x%02x in a chunk size", c)
		}
	case sChunkOWS:
		p.chunkLine++
		switch c {
		case ' ', '\t':
		case '\r':
			p.state = sChunkLF
		default:
			// net/http trims whitespace only at the end of the line.
			return refusef("invalid byte after a chunk size", "byte 0x%02x after a chunk size", c)
		}
	case sChunkExt:
		p.chunkLine++
		switch {
		case c == '\r':
			p.state = sChunkLF
		case c == '\n':
			return refuse("bare LF in a chunk line")
		case c < 0x20 && c != '\t' || c == 0x7f:
			// RFC 9112 Section 7.1.1: an extension is tokens,
			// quoted-strings and whitespace, none of which holds a
			// control byte. net/http skips the extension unread, but a
			// parser before or after pqedge that ends the line at a
			// NUL, or reads the byte as a line end, frames the body
			// otherwise.
			return refusef("control byte in a chunk extension", "control byte 0x%02x in a chunk extension", c)
		}
	case sChunkData:
		p.remaining--
		if p.remaining == 0 {
			p.state = sChunkDataCR
		}
	case sChunkDataCR:
		if c != '\r' {
			return refuse("chunk data not followed by CRLF")
		}
		p.state = sChunkDataLF
	case sTrailerLF:
		if c != '\n' {
			return refuse("CR not followed by LF")
		}
		p.endMessage()
	}
	if p.state == sChunkSize || p.state == sChunkOWS || p.state == sChunkExt {
		if p.chunkLine >= maxChunkLine {
			return refusef("chunk line too long", "chunk line longer than %d bytes", maxChunkLine)
		}
	}
	return nil
}

func (p *parser) resetHead() {
	*p = parser{maxHead: p.maxHead, maxTarget: p.maxTarget, maxFields: p.maxFields, head: 1, requests: p.requests, offset: p.offset, endAt: p.endAt}
}

func (p *parser) method(c byte) *refusal {
	switch {
	case c == ' ':
		if p.tokenLen == 0 {
			return refuse("empty method")
		}
		p.state, p.tokenLen = sTarget, 0
	case isTokenChar(c):
		p.tokenLen++
	default:
		return refusef("invalid byte in the method", "byte 0x%02x in the method", c)
	}
	return nil
}

// inTrailer starts a field line; trailer fields do not frame anything.
func (p *parser) inTrailer(trailer bool) {
	p.trailer = trailer
	p.nameLen, p.nameLong, p.field = 0, false, fieldOther
	p.valueLen, p.valueBad, p.owsRun, p.clDigits, p.clValue = 0, false, 0, 0, 0
	if trailer {
		p.nameLong = true // never a framing field
	}
}

func (p *parser) nameByte(c byte) *refusal {
	switch {
	case c == ':':
		if p.nameLen == 0 {
			return refuse("empty field name")
		}
		if !p.nameLong {
			switch string(p.name[:p.nameLen]) {
			case "content-length":
				p.field = fieldContentLength
			case "transfer-encoding":
				p.field = fieldTransferEncoding
			}
		}
		p.state = sValue
	case isTokenChar(c):
		if p.nameLen < len(p.name) {
			p.name[p.nameLen] = lower(c)
		} else {
			p.nameLong = true
		}
		p.nameLen++
	default:
		// Whitespace before the colon included (RFC 9112 Section 5.1).
		return refusef("invalid byte in a field name", "byte 0x%02x in a field name", c)
	}
	return nil
}

func (p *parser) valueByte(c byte) *refusal {
	switch {
	case c == '\r':
		p.state = sValueLF
		return nil
	case c == '\n':
		return refuse("bare LF")
	case c == ' ' || c == '\t':
		if p.valueLen == 0 && p.clDigits == 0 {
			return nil // leading OWS
		}
		p.owsRun++
		return nil
	case c < 0x20 || c == 0x7f:
		return refusef("control byte in a field value", "control byte 0x%02x in a field value", c)
	}
	if p.owsRun > 0 {
		// Whitespace inside the value: no framing value has any.
		p.valueBad = true
	}
	switch p.field {
	case fieldContentLength:
		if c < '0' || c > '9' || p.clDigits == 18 {
			p.valueBad = true // net/http takes 1*DIGIT up to 63 bits
			return nil
		}
		p.clDigits++
		p.clValue = p.clValue*10 + uint64(c-'0')
	case fieldTransferEncoding:
		if p.valueLen < len(p.value) {
			p.value[p.valueLen] = lower(c)
		} else {
			p.valueBad = true
		}
		p.valueLen++
	}
	return nil
}

// endField records a framing field once its line has ended.
func (p *parser) endField() {
	switch p.field {
	case fieldContentLength:
		bad := p.valueBad || p.clDigits == 0
		if p.clCount > 0 && p.clValue != p.clFirst {
			p.clDiffers = true
		}
		if p.clCount == 0 {
			p.clFirst = p.clValue
		}
		p.clCount++
		p.clBad = p.clBad || bad
	case fieldTransferEncoding:
		p.teCount++
		p.teChunked = !p.valueBad && string(p.value[:p.valueLen]) == "chunked"
	}
}

// endHead decides the framing of the message whose head just ended (RFC
// 9112 Section 6.3), refusing every head whose body length net/http could
// read otherwise than a proxy or client before it.
func (p *parser) endHead() *refusal {
	switch {
	case p.teCount > 0 && p.http10:
		// Section 6.3 item 3: the framing is faulty; net/http would
		// ignore the field and read the rest as the next request.
		return refuse("Transfer-Encoding in an HTTP/1.0 request")
	case p.teCount > 0 && p.clCount > 0:
		// Section 6.1: a request smuggling attempt until proven
		// otherwise; net/http would drop Content-Length silently.
		return refuse("both Content-Length and Transfer-Encoding")
	case p.teCount > 1 || p.teCount == 1 && !p.teChunked:
		// net/http answers these 501; nothing but "chunked" frames a
		// request it accepts.
		return refuse("transfer coding other than a single \"chunked\"")
	case p.clBad:
		return refuse("malformed Content-Length")
	case p.clDiffers:
		return refuse("conflicting Content-Length fields")
	case p.teCount == 1:
		p.state, p.remaining, p.chunkDigits, p.chunkLine = sChunkSize, 0, 0, 0
	case p.clCount > 0 && p.clFirst > 0:
		p.state, p.remaining = sBodyLength, p.clFirst
	default:
		p.endMessage()
	}
	return nil
}

// endChunkLine starts the chunk's data, or the trailer after the last one.
func (p *parser) endChunkLine() {
	if p.remaining == 0 {
		p.state, p.head, p.fields = sTrailerStart, 0, 0
		return
	}
	p.state, p.chunkDigits, p.chunkLine = sChunkData, 0, 0
}

func (p *parser) endMessage() {
	p.requests++
	p.state, p.head, p.endAt = sRequestStart, 0, p.offset
}

// between reports whether the parser is between two messages.
func (p *parser) between() bool { return p.state == sRequestStart }

// isTokenChar: tchar of RFC 9110 Section 5.6.2.
func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' ||
		c == '+' || c == '-' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~'
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
