package proxy

import (
	"context"
	"io"
	"net/http"
	"slices"

	"golang.org/x/net/http/httpguts"
)

// Request trailers (RFC 9110 Section 6.5) reach the upstream in the
// trailer section of a chunked HTTP/1.1 request. Three things stood in
// the way, each losing the client's trailers silently:
//
//   - httputil.ReverseProxy clones the request before the body is read,
//     so the clone's Trailer map held the announced names without values
//     (the upstream saw "Trailer: X-Checksum" and no X-Checksum);
//   - a server that learns of trailers only at the body's end may assign
//     a new map to the Trailer field of the request it handed over
//     instead of filling the one there: net/http's HTTP/1.1 server when
//     the client announced none, quic-go's HTTP/3 server always. Copies
//     made before (r.WithContext) keep the old map, or nil;
//   - a request with a known length went upstream with Content-Length,
//     where no trailer section fits.
//
// RequestWithContext shares one map between the handed-over request and
// its copies; the proxy copies what arrived into the clone's map when
// the body reaches its end (before the transport writes the trailer
// section) and sends a body that may carry announced trailers chunked.

// RequestWithContext returns r.WithContext(ctx), for a server handing r,
// the request its HTTP server passed to its handler, to an HTTPProxy (or
// to a handler before one): the trailers of r's body that arrive at its
// end are seen through the copy too. Trailers announced over HTTP/2 need
// nothing (net/http fills the announced map in place, and drops the
// others); a chunked HTTP/1.1 body and any HTTP/3 body get a Trailer map
// of their own and a body that copies r's trailers into it at the end.
// r itself is not modified.
func RequestWithContext(r *http.Request, ctx context.Context) *http.Request {
	out := r.WithContext(ctx)
	if r.Body == nil || r.Body == http.NoBody || !(r.ProtoMajor == 1 && r.ContentLength < 0 || r.ProtoMajor == 3) {
		return out
	}
	out.Trailer = r.Trailer.Clone()
	if out.Trailer == nil {
		out.Trailer = http.Header{}
	}
	out.Body = &trailerSource{ReadCloser: r.Body, from: r, to: out.Trailer}
	return out
}

// trailerSource is a body whose end copies the trailers its server set on
// the handed-over request (from) into the map its copies share (to). The
// server sets them before the read that returns io.EOF returns, on the
// reading goroutine, so to is filled before anyone sees the end.
type trailerSource struct {
	io.ReadCloser
	from *http.Request
	to   http.Header
}

func (s *trailerSource) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if err == io.EOF {
		for k, vs := range s.from.Trailer {
			s.to[k] = vs
		}
	}
	return n, err
}

// notTrailers are the canonical names, besides those
// httpguts.ValidTrailerHeader refuses (framing, routing, authentication,
// conditionals and range, Content-Type and its kin, Expect, TE), that RFC
// 9110 Section 6.5.1 rules out as trailers because they are acted on
// before the content: Cookie (authentication, named there with RFC
// 6265), and Upgrade and Via (the connection and forwarding, Sections
// 7.8 and 7.6.3).
var notTrailers = []string{"Cookie", "Upgrade", "Via"}

// dropsTrailer reports whether a client's trailer field must not reach the
// upstream: any name the header policy drops (pqedge's own and
// X-Forwarded-* in every spelling, invalid names, "_" by default), and
// the fields RFC 9110 Section 6.5.1 rules out as trailers, which an
// upstream that merges trailers into the header section (as many do)
// would otherwise act on after pqedge routed and checked the request.
func (p *headerPolicy) dropsTrailer(name string) bool {
	if p.drops(name) {
		return true
	}
	c := http.CanonicalHeaderKey(name)
	return !httpguts.ValidTrailerHeader(c) || slices.Contains(notTrailers, c)
}

// filterTrailers removes from t the names dropsTrailer drops.
func (p *headerPolicy) filterTrailers(t http.Header) {
	for name := range t {
		if p.dropsTrailer(name) {
			delete(t, name)
		}
	}
}

// trailerCopy carries the client's request trailers to the upstream
// request: from is the client request's Trailer map (shared with the
// server's request, RequestWithContext), to the map of ReverseProxy's
// clone, which the transport writes after the body.
type trailerCopy struct {
	policy   *headerPolicy
	from, to http.Header
}

// copy puts the trailers that arrived, but those the policy drops, into
// the upstream request's map. It runs once the body has ended, on the
// goroutine that read the end, before the transport writes the trailer
// section.
func (c *trailerCopy) copy() {
	for k, vs := range c.from {
		if len(vs) > 0 && !c.policy.dropsTrailer(k) {
			c.to[k] = vs
		}
	}
}

// prepareTrailers sets up the upstream request out (ReverseProxy's clone
// of in) to carry in's trailers: announced names the policy keeps, a map
// for those yet to come, and chunked framing when trailers are announced
// or already arrived (a body read whole, st.preRead). A body of declared
// length whose trailers were not announced goes with its Content-Length,
// and such trailers are lost: its header section went before they came.
func (p *HTTPProxy) prepareTrailers(st *reqState, in, out *http.Request) {
	if in.Trailer == nil || !st.hasBody {
		out.Trailer = nil
		return
	}
	if out.Trailer == nil {
		out.Trailer = http.Header{}
	}
	p.headers.filterTrailers(out.Trailer)
	tc := trailerCopy{policy: &p.headers, from: in.Trailer, to: out.Trailer}
	if st.preRead {
		tc.copy()
	} else {
		st.bodyBuf.trailers = tc
	}
	if len(out.Trailer) > 0 {
		// RFC 9112 Section 7.1.2: trailers follow the last chunk only.
		out.ContentLength = -1
	}
}
