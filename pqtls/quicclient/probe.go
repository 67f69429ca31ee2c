package quicclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// ProbeConfig says what Probe tries.
type ProbeConfig struct {
	ServerName string
	// Timeout bounds each handshake (default DefaultTimeout). A server
	// that does not speak QUIC on the port costs one Timeout: UDP has no
	// refusal to wait for.
	Timeout time.Duration
	// Groups to test one at a time; empty means every group crypto/tls
	// can offer (pqtls's servable groups).
	Groups []tls.CurveID
}

// GroupResult is what a server did with one group offered alone (with
// its key share) over QUIC.
type GroupResult struct {
	Group    tls.CurveID
	Accepted bool  // the handshake completed with this group
	Err      error // why not, when it did not
}

// ProbeReport is what Probe found about a server's QUIC side.
type ProbeReport struct {
	Address string
	// QUIC is true when a QUIC handshake completed at all; HTTP3 when it
	// negotiated ALPN "h3" (RFC 9114 Section 3.1).
	QUIC  bool
	HTTP3 bool
	// First is the handshake with crypto/tls's default groups, whose
	// shape (Initial packets, bytes, chain) the report prints; FirstErr
	// is why it failed when QUIC is false.
	First    *Result
	FirstErr error
	Groups   []GroupResult
}

// Probe finds out whether addr speaks QUIC and HTTP/3 on UDP, and which
// groups it accepts there. It returns an error only for a bad address;
// a server that does not answer is a report with QUIC false.
func Probe(ctx context.Context, addr string, pc ProbeConfig) (*ProbeReport, error) {
	if len(pc.Groups) == 0 {
		for _, g := range pqtls.Groups() {
			if g.Servable {
				pc.Groups = append(pc.Groups, g.ID)
			}
		}
	}
	rep := &ProbeReport{Address: addr}
	cfg := Config{ServerName: pc.ServerName, Timeout: pc.Timeout, ALPN: []string{"h3"}}
	rep.First, rep.FirstErr = Dial(ctx, addr, &cfg)
	if rep.FirstErr != nil {
		var addrErr *addressError
		if errors.As(rep.FirstErr, &addrErr) {
			return nil, rep.FirstErr
		}
		// Some QUIC servers speak only other protocols: "h3" refused
		// (no_application_protocol, RFC 9001 Section 8.1) still proves
		// QUIC. Nothing more to learn without a common ALPN.
		rep.QUIC = ErrorKind(rep.FirstErr) == "alert:no_application_protocol"
		return rep, nil
	}
	rep.QUIC = true
	rep.HTTP3 = rep.First.ALPN == "h3"
	for _, g := range pc.Groups {
		c := cfg
		c.Groups = []tls.CurveID{g}
		res, err := Dial(ctx, addr, &c)
		gr := GroupResult{Group: g, Err: err}
		switch {
		case err != nil:
		case res.Group != g:
			gr.Err = fmt.Errorf("server negotiated %s, not the only group offered", pqtls.GroupName(res.Group))
		default:
			gr.Accepted = true
		}
		rep.Groups = append(rep.Groups, gr)
	}
	return rep, nil
}

// addressError is a HOST:PORT that cannot be resolved: a usage error, not
// a property of the server.
type addressError struct{ err error }

func (e *addressError) Error() string { return e.err.Error() }
func (e *addressError) Unwrap() error { return e.err }
