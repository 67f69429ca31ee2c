package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/quic-go/qpack"
)

// checkH3RequestFields refuses what Go's HTTP/2 server refuses in a
// request's field section and quic-go's HTTP/3 server lets through
// without telling the handler, so that pqedge's HTTP/3 forwards no
// request its HTTP/2 calls malformed (RFC 9114 Section 4.1.2: an
// intermediary MUST NOT forward one). block is the HEADERS frame's
// payload (awaitHeaders); nil, or one QPACK cannot decode, is left to
// quic-go, which refuses the latter itself. The error says what is
// wrong:
//
//   - a :scheme missing, empty or other than "http" or "https" (compared
//     without case, RFC 3986 Section 3.1) in a request other than a
//     plain CONNECT (RFC 9114 Section 4.3.1: exactly one :scheme; pqedge
//     serves no other scheme). quic-go does not read :scheme at all, and
//     the handler never sees it.
//   - a content-length that is not 1*DIGIT (RFC 9110 Section 8.6): quic-go
//     drops an empty one and serves the request as if it had none, its
//     body framed by DATA alone.
//
// pqedge decodes only the static table (quic-go's QPACK decoder, like
// this one, refuses dynamic references; SETTINGS announces a capacity
// of 0), so decoding twice costs field strings, not state.
func checkH3RequestFields(block []byte) error {
	if block == nil {
		return nil
	}
	var method, scheme, protocol string
	var hasScheme bool
	next := qpack.NewDecoder().Decode(block)
	for {
		f, err := next()
		if err != nil {
			break // io.EOF, or a block quic-go refuses
		}
		switch f.Name {
		case ":method":
			method = f.Value
		case ":scheme":
			scheme, hasScheme = f.Value, true
		case ":protocol":
			protocol = f.Value
		case "content-length":
			if f.Value == "" || strings.Trim(f.Value, "0123456789") != "" {
				return fmt.Errorf("content-length %q is not a decimal number", f.Value)
			}
		}
	}
	if method == "CONNECT" && protocol == "" {
		return nil // quic-go refuses a :scheme here (RFC 9114 Section 4.4)
	}
	if !hasScheme {
		return errH3NoScheme
	}
	if !strings.EqualFold(scheme, "https") && !strings.EqualFold(scheme, "http") {
		return fmt.Errorf(":scheme %q is not http or https", scheme)
	}
	return nil
}

var errH3NoScheme = errors.New("no :scheme")
