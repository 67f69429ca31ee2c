package leanclient

import (
	"bytes"
	"errors"
	"fmt"
)

// maxStatusLine bounds the bytes kept to find the response's status line:
// the rest of the response is only counted, so a server that sends
// megabytes costs the client no memory.
const maxStatusLine = 1024

// typeKeyUpdate is the KeyUpdate handshake message (RFC 8446 Section 4.6.3).
const typeKeyUpdate = 24

// readResponse reads the answer to Config.Request until the server's
// close_notify or close, within the handshake deadline, and reports its
// status code and size.
func (hs *handshakeState) readResponse() error {
	const op = "read HTTP response"
	if err := hs.setServerAppKeys(op); err != nil {
		return err
	}
	var head []byte // the first maxStatusLine bytes
	for {
		typ, body, err := hs.rc.readRecord(op)
		if err != nil {
			if endOfResponse(err) {
				break
			}
			return err
		}
		switch typ {
		case recordApplicationData:
			hs.res.ResponseBytes += len(body)
			if room := maxStatusLine - len(head); room > 0 {
				head = append(head, body[:min(room, len(body))]...)
			}
		case recordHandshake:
			if err := hs.skipPostHandshake(op, body); err != nil {
				return err
			}
		default:
			return malformed(op, "unexpected record type %d after the handshake", typ)
		}
	}
	if len(hs.rc.hsBuf) != 0 {
		return malformed(op, "connection closed in the middle of a post-handshake message")
	}
	code, err := parseStatusLine(head)
	if err != nil {
		return &Error{Kind: KindMalformed, Op: op, Err: fmt.Errorf("%w (%d bytes came back)", err, hs.res.ResponseBytes)}
	}
	hs.res.Status = code
	return nil
}

// endOfResponse says err is the server ending the connection cleanly
// enough for the response to be complete: its close_notify, or a close
// between records (servers may close without close_notify, RFC 8446
// Section 6.1 notwithstanding; the status line check still applies).
func endOfResponse(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Kind == KindAlert && e.Alert == 0 || e.Kind == KindDial
}

// skipPostHandshake drops the NewSessionTicket messages of a handshake
// record that arrives after the handshake; a message may span records
// (RFC 8446 Section 5.1), so a partial one waits in hsBuf. A KeyUpdate
// (RFC 8446 Section 4.6.3), which would change the read keys, is not
// implemented.
func (hs *handshakeState) skipPostHandshake(op string, body []byte) error {
	if len(body) == 0 {
		return malformed(op, "empty handshake record (RFC 8446 Section 5.1)")
	}
	c := hs.rc
	c.hsBuf = append(c.hsBuf, body...)
	for len(c.hsBuf) >= 4 {
		n := int(c.hsBuf[1])<<16 | int(c.hsBuf[2])<<8 | int(c.hsBuf[3])
		if n > maxHandshakeMessage {
			return malformed(op, "handshake message of %d bytes is too large", n)
		}
		if len(c.hsBuf) < 4+n {
			return nil
		}
		msg := c.hsBuf[:4+n]
		switch msg[0] {
		case typeNewSessionTicket:
			if _, err := parseNewSessionTicket(msg); err != nil {
				return err
			}
		case typeKeyUpdate:
			return unsupported(op, "server sent KeyUpdate, which this client does not implement")
		default:
			return malformed(op, "unexpected handshake message type %d after the handshake", msg[0])
		}
		c.hsBuf = c.hsBuf[4+n:]
	}
	if len(c.hsBuf) == 0 {
		c.hsBuf = nil
	}
	return nil
}

// parseStatusLine returns the status code of an HTTP/1.x response that
// starts with head: status-line = HTTP-version SP status-code SP
// [reason-phrase] CRLF (RFC 9112 Section 4), a lone LF accepted as the
// line end (RFC 9112 Section 2.2) and the reason's SP tolerated when
// missing. The code must be three digits from 100 to 599 (RFC 9110
// Section 15).
func parseStatusLine(head []byte) (int, error) {
	end := bytes.IndexByte(head, '\n')
	if end < 0 {
		if len(head) == 0 {
			return 0, errors.New("no response")
		}
		if len(head) >= maxStatusLine {
			return 0, fmt.Errorf("no status line end in the first %d bytes", maxStatusLine)
		}
		return 0, fmt.Errorf("incomplete status line %q", head)
	}
	line := bytes.TrimSuffix(head[:end], []byte("\r"))
	const version = len("HTTP/1.1")
	if len(line) < version+4 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || !isDigit(line[7]) || line[version] != ' ' {
		return 0, fmt.Errorf("bad status line %q: want HTTP/1.x and a status code", truncateQuote(line))
	}
	digits := line[version+1 : version+4]
	if len(line) > version+4 && line[version+4] != ' ' {
		return 0, fmt.Errorf("bad status line %q: the status code is not three digits", truncateQuote(line))
	}
	code := 0
	for _, d := range digits {
		if !isDigit(d) {
			return 0, fmt.Errorf("bad status line %q: the status code is not three digits", truncateQuote(line))
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 || code > 599 {
		return 0, fmt.Errorf("bad status line %q: status code %d outside 100-599", truncateQuote(line), code)
	}
	return code, nil
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// truncateQuote keeps an error message short when a server sends a long
// first line.
func truncateQuote(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
