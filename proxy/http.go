package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Default header names for the handshake facts forwarded to upstreams.
const (
	DefaultGroupHeader     = "PQEdge-TLS-Group"
	DefaultPQHeader        = "PQEdge-TLS-PQ"
	DefaultSignatureHeader = "PQEdge-TLS-Signature"
	DefaultVersionHeader   = "PQEdge-TLS-Version"
	DefaultCipherHeader    = "PQEdge-TLS-Cipher"
)

// Defaults applied to zero fields of HTTPOptions.
const (
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	// DefaultMaxIdleConnsPerHost is sized for the requests a pool has in
	// flight at once: net/http's Transport closes every connection that
	// finishes beyond it instead of parking it, and the next request
	// dials again (golang/go#13801).
	DefaultMaxIdleConnsPerHost  = 512
	DefaultUpstreamIdleTimeout  = 5 * time.Minute
	DefaultRequestBodyTimeout   = 30 * time.Second
	DefaultRequestBodyMinRate   = 1024 // bytes per second
	DefaultResponseWriteTimeout = 30 * time.Second
	// DefaultMaxResponseHeaderBytes is of the order of the request header
	// limit: Go's transport default (10 MB) let an upstream whose header
	// never ended make pqedge buffer ~15 MB per request.
	DefaultMaxResponseHeaderBytes = 64 << 10
	// DefaultMaxHeaderFields caps the fields of a request's and of an
	// upstream response's header section, and apart of each trailer
	// section. Under the byte limits alone a section held 16,000 short
	// fields: a 10,000-field response cost ~16 ms of CPU and 4.2 MB of
	// allocations to pass on. 100 is Apache's LimitRequestFields,
	// Envoy's max_headers_count (requests and responses) and hyper's
	// limit; HAProxy's tune.http.maxhdr is 101; nginx and Go's net/http
	// cap bytes only.
	DefaultMaxHeaderFields = 100
)

// HandshakeFacts is what the TLS handshake of the client's connection
// negotiated, in pqtls names. The server stores it in each request's context
// (through http.Server.ConnContext and WithHandshakeFacts); the HTTP proxy
// forwards it to upstreams as request headers.
type HandshakeFacts struct {
	Group     string // key-exchange group, e.g. "X25519MLKEM768"
	Signature string // signature scheme of the server's CertificateVerify, e.g. "mldsa65"
	Version   string // e.g. "TLS 1.3"
	Cipher    string // e.g. "TLS_AES_128_GCM_SHA256"
	PQ        bool   // the key exchange resists a quantum attacker
	// ALPN and ServerName are the negotiated protocol and the client's
	// SNI, for the PROXY v2 TLVs of streams.
	ALPN, ServerName string
}

type factsKey struct{}

// connFacts is what WithHandshakeFacts stores: the facts, the values of
// their request headers, made once for every request of the connection,
// and the last forwarded headers made for it.
type connFacts struct {
	facts                                 HandshakeFacts
	group, pq, signature, version, cipher []string // nil for a fact that is ""
	fwd                                   atomic.Pointer[forwarded]
	// values backs the one-element slices above, so that a connection's
	// facts are one allocation, not six (one per slice).
	values [5]string
}

// WithHandshakeFacts returns a copy of ctx carrying f. The server calls it
// once per connection (http.Server.ConnContext): the header values of
// every request on the connection are made here.
func WithHandshakeFacts(ctx context.Context, f HandshakeFacts) context.Context {
	cf := &connFacts{facts: f}
	cf.values = [5]string{strconv.FormatBool(f.PQ), f.Group, f.Signature, f.Version, f.Cipher}
	for i, dst := range []*[]string{&cf.pq, &cf.group, &cf.signature, &cf.version, &cf.cipher} {
		if cf.values[i] != "" {
			*dst = cf.values[i : i+1 : i+1]
		}
	}
	return context.WithValue(ctx, factsKey{}, cf)
}

func connFactsFrom(ctx context.Context) *connFacts {
	cf, _ := ctx.Value(factsKey{}).(*connFacts)
	return cf
}

// HandshakeFactsFrom returns the facts stored by WithHandshakeFacts; ok is
// false for a connection without TLS (or whose server did not store them).
func HandshakeFactsFrom(ctx context.Context) (f HandshakeFacts, ok bool) {
	if cf := connFactsFrom(ctx); cf != nil {
		return cf.facts, true
	}
	return HandshakeFacts{}, false
}

// HeaderNames name the request headers carrying HandshakeFacts upstream.
// An empty field takes the matching Default*Header.
type HeaderNames struct {
	Group, PQ, Signature, Version, Cipher string
}

func (h *HeaderNames) setDefaults() {
	for _, f := range []struct {
		p   *string
		def string
	}{
		{&h.Group, DefaultGroupHeader},
		{&h.PQ, DefaultPQHeader},
		{&h.Signature, DefaultSignatureHeader},
		{&h.Version, DefaultVersionHeader},
		{&h.Cipher, DefaultCipherHeader},
	} {
		if *f.p == "" {
			*f.p = f.def
		}
		*f.p = http.CanonicalHeaderKey(*f.p)
	}
}

// HTTPOptions configure an HTTPProxy. Zero fields take the documented
// default.
type HTTPOptions struct {
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// headers after the request was written, so an upstream that accepts
	// and never answers costs the client a 504, not a hang.
	// Default DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes keep-alive connections to upstreams unused this
	// long. Default DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is the number of idle keep-alive connections
	// kept per upstream. Set it at or above the requests in flight to one
	// upstream at peak: a connection that finishes beyond it is closed,
	// and a later request pays a new connect (golang/go#13801). Default
	// DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// UpstreamIdleTimeout bounds every read and write on an upstream
	// connection (a deadline moved forward with the I/O, lazily: a stall
	// fails after between 15/16 of it and all of it): it ends response
	// bodies and WebSocket streams that stall this long in one direction,
	// which the header timeout cannot. Default DefaultUpstreamIdleTimeout.
	UpstreamIdleTimeout time.Duration
	// FlushInterval is passed to httputil.ReverseProxy (0: its default,
	// negative: flush after every write).
	FlushInterval time.Duration

	// RequestBodyTimeout is the longest the client's request body may
	// stall without a byte; the client then gets 408 and the upstream
	// request is abandoned, so a client that starts a body and stops (slow
	// POST) cannot pin an upstream connection. Default
	// DefaultRequestBodyTimeout.
	RequestBodyTimeout time.Duration
	// RequestBodyMinRate is the slowest average rate, in bytes per second,
	// a body may arrive at once reads of it have waited RequestBodyTimeout
	// on the client in all: a body trickled a byte at a time just inside
	// the stall timeout fails too. Only time spent waiting on the client
	// counts, not the upstream's before or between its reads. Default
	// DefaultRequestBodyMinRate; negative turns the floor off.
	RequestBodyMinRate int64
	// ResponseWriteTimeout bounds each write of the response to the client
	// (and each write to a WebSocket client), so a client that stops
	// reading (slow read) cannot hold the upstream connection; like
	// UpstreamIdleTimeout, a stall fails after between 15/16 of it and all
	// of it (over HTTP/2 after exactly it). Only a write under way counts:
	// the upstream's pauses between writes are UpstreamIdleTimeout's.
	// Default DefaultResponseWriteTimeout.
	ResponseWriteTimeout time.Duration
	// MaxResponseHeaderBytes caps an upstream response's header block, and
	// separately the heads of the interim (1xx) responses before it, all
	// together; a larger one is answered with 502 and counts against the
	// upstream. Default DefaultMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int64
	// MaxRequestHeaderFields caps the fields of a request's header
	// section (its values, Host aside: a field repeated counts once per
	// line or value) and apart of its trailer section: more fields are
	// answered 431 Request Header Fields Too Large (RFC 6585 Section 5),
	// more trailers fail the body (400); neither reaches an upstream.
	// MaxResponseHeaderFields caps an upstream response's field lines
	// and apart its trailer lines: more are answered 502 (or, in the
	// trailers, end the response cut short), count against the upstream
	// and close its connection. Default DefaultMaxHeaderFields each;
	// negative: no cap.
	MaxRequestHeaderFields, MaxResponseHeaderFields int

	// Headers name the handshake-fact headers. Client-sent copies of these
	// names are always removed, so an upstream can trust them.
	Headers HeaderNames
	// AllowUnderscoreHeaders passes client header names containing "_"
	// upstream; by default they are dropped (see HTTPProxy).
	AllowUnderscoreHeaders bool

	// ModifyResponse, if set, is called with each upstream response before
	// it is copied to the client, on the request's goroutine. Returning an
	// error answers the client with 502 and does not count against the
	// upstream's health.
	ModifyResponse func(*http.Response) error

	// Logger receives upstream errors at Warn. Default slog.Default().
	Logger *slog.Logger
}

// RequestInfo reports what the proxy did with one request, for the server's
// access log and metrics. Install it with WithRequestInfo before calling
// ServeHTTP; the proxy fills it on the request's goroutine, so it may be read
// once ServeHTTP has returned.
type RequestInfo struct {
	// Upstream is the configured address of the upstream picked, empty when
	// none was healthy or the request was refused before one was picked.
	Upstream string
	// Err is why the proxy answered by itself: an upstream error (502,
	// 503, 504), or, with ClientError, the client's.
	Err error
	// ClientError is true when Err is the client's doing: a request
	// refused before any upstream was picked (400, 405), a request body
	// that was malformed, too slow or cut off (400, 408, 413), or a client
	// that left (499). It never counts against the upstream.
	ClientError bool
	// UpstreamTLS is what the TLS handshake of the connection that carried
	// the request to an https:// upstream negotiated: the origin leg. That
	// connection may have been opened for an earlier request (keep-alive).
	// nil for other upstreams, and when no connection was had.
	UpstreamTLS *HandshakeFacts
}

type requestInfoKey struct{}

// gotConn records the origin leg of the connection the transport took for
// the request (httptrace calls it before the request is written).
func (info *RequestInfo) gotConn(ci httptrace.GotConnInfo) {
	if dc, ok := ci.Conn.(*deadlineConn); ok && dc.origin != nil {
		info.UpstreamTLS = dc.origin
	}
}

// request is one request's RequestInfo and the proxy's own state of it, in
// one allocation: the server makes it (WithRequestInfo) with the context
// value that carries it, and the proxy needs no context of its own.
type request struct {
	info RequestInfo
	st   reqState
}

// WithRequestInfo returns a context carrying a new RequestInfo to be filled
// by HTTPProxy.ServeHTTP.
func WithRequestInfo(ctx context.Context) (context.Context, *RequestInfo) {
	rq := new(request)
	return context.WithValue(ctx, requestInfoKey{}, rq), &rq.info
}

// HTTPProxy is an http.Handler that forwards requests over HTTP/1.1 to the
// upstreams of one pool.
type HTTPProxy struct {
	pool      *Pool
	opts      HTTPOptions
	log       *slog.Logger
	rp        *httputil.ReverseProxy
	transport *http.Transport
	headers   headerPolicy
}

var _ http.Handler = (*HTTPProxy)(nil)

// reqState is what ServeHTTP hands the ReverseProxy hooks through the
// request context (inside a request).
type reqState struct {
	claimed bool // a ServeHTTP uses it (a second proxy the request reaches makes its own)
	up      *upstream
	info    *RequestInfo // never nil
	ctl     http.ResponseController
	body    *clientBody // nil for requests without a body; else &bodyBuf
	bodyBuf clientBody
	ww      writeDeadline
	trace   httptrace.ClientTrace

	interimLeft int64 // bytes of interim (1xx) response heads still allowed
	reached     bool  // the transport had an upstream connection for the request
	hasBody     bool  // the upstream request has a body
	preRead     bool  // ... read whole before it went upstream (PreReadBody)
	// wrote is set once the transport wrote the whole request, body
	// included (WroteRequest, on the transport's write loop).
	wrote atomic.Bool
	// conn is the upstream connection the request got (set with
	// reached; nil for a connection not made by dial), and received its
	// count of bytes read then, or at the last interim response (got1xx,
	// on the transport's read loop): a 100 Continue or 103 Early Hints is
	// no answer to the request.
	conn     *deadlineConn
	received atomic.Int64
	method   string // the request's, for the connection's responseFramer
	// own are the response header fields set before the request reached
	// the proxy (Alt-Svc for the listener's HTTP/3): pqedge's, not the
	// upstream's (keepOwnHeaders). The values are shared, never modified.
	own    []ownedHeader
	ownBuf [2]ownedHeader
	// respBody is the upstream response's body as ReverseProxy reads it
	// (modifyResponse): its end is when the upstream served the request.
	respBody upstreamBody
	// cut is why the response's body could not be copied whole once its
	// head was sent (cutShort); nil while it could.
	cut error
}

// cutShort records that the response's body could not be copied whole:
// its upstream broke it, or the client stopped reading past
// ResponseWriteTimeout or left (clientGone). The request is then aborted
// (panic(http.ErrAbortHandler), ServeHTTP) and carries the reason in its
// RequestInfo for the log, unless an earlier error already explains it.
// The first cause wins: a write failing after the body broke says nothing.
func (st *reqState) cutShort(err error, clientGone bool) {
	if st.cut != nil {
		return
	}
	st.cut = err
	if st.info.Err == nil {
		st.info.Err, st.info.ClientError = fmt.Errorf("response cut short: %w", err), clientGone
	}
}

// upstreamSpoke reports whether the upstream began a final answer on the
// request's connection: bytes read since the request got it (or since
// its last interim response), such as a 413 to a body it will not take,
// read by the transport's read loop even when the write's failure then
// wins; or bytes waiting unread when a write failed.
func (st *reqState) upstreamSpoke() bool {
	return st.conn != nil && (st.conn.received.Load() > st.received.Load() || st.conn.answered.Load())
}

// ownedHeader is a response header field pqedge set itself.
type ownedHeader struct {
	name   string
	values []string
}

// ownedPrefix begins the canonical names of pqedge's own response fields
// (PQEdge-PQ-Warning): an upstream's are dropped, set by pqedge or not.
const ownedPrefix = "Pqedge-"

// keepOwnHeaders drops from an upstream response h the fields pqedge sets
// on responses itself, so that a client can trust them: those set before
// the request reached the proxy (ReverseProxy would add the upstream's
// values to them: an upstream's Alt-Svc could send clients elsewhere or
// "clear" pqedge's HTTP/3) and every PQEdge-* field (an upstream's
// PQEdge-PQ-Warning on a post-quantum connection). It also puts pqedge's
// back, which an interim response relayed before cleared.
func (st *reqState) keepOwnHeaders(h http.Header) {
	for k := range h {
		if st.owns(k) {
			delete(h, k)
		}
	}
	st.restoreOwn()
}

// restoreOwn sets pqedge's own fields on the client's response again.
// The values are clipped to their length: ReverseProxy appends an
// upstream's interim fields to the client's map, and an append must not
// write into the array the values share.
func (st *reqState) restoreOwn() {
	if len(st.own) == 0 {
		return
	}
	h := st.ww.Header()
	for _, o := range st.own {
		h[o.name] = o.values[:len(o.values):len(o.values)]
	}
}

// owns reports whether the canonical field name is one pqedge sets on its
// responses (keepOwnHeaders).
func (st *reqState) owns(name string) bool {
	if strings.HasPrefix(name, ownedPrefix) {
		return true
	}
	for _, o := range st.own {
		if o.name == name {
			return true
		}
	}
	return false
}

// filterResponseTrailers drops from an upstream response's trailers t
// what no client may be given after the body: pqedge's own fields
// (owns), which a client that merges trailers into the header section
// would take as pqedge's, and the fields RFC 9110 Section 6.5.1 rules out
// as trailers (httpguts.ValidTrailerHeader: framing, routing,
// authentication, Content-Type and its kin). net/http's HTTP/2 server
// drops the latter itself; its HTTP/1.1 server writes any trailer a
// handler sets after its header section (http.TrailerPrefix), which is
// how ReverseProxy relays those the upstream did not announce.
func (st *reqState) filterResponseTrailers(t http.Header) {
	for k := range t {
		if st.owns(k) || !httpguts.ValidTrailerHeader(k) {
			delete(t, k)
		}
	}
}

// unsolicited reports whether the request's connection was dropped for
// bytes past the end of a response.
func (st *reqState) unsolicited() bool {
	return st.conn != nil && st.conn.failed.Load() != nil
}

// wroteRequest notes that the whole request went upstream.
func (st *reqState) wroteRequest(w httptrace.WroteRequestInfo) {
	if w.Err == nil {
		st.wrote.Store(true)
	}
}

// gotConn notes that the request reached an upstream connection, and its
// origin leg (httptrace calls it on the request's goroutine, before the
// request is written).
func (st *reqState) gotConn(ci httptrace.GotConnInfo) {
	st.reached = true
	if dc, ok := ci.Conn.(*deadlineConn); ok {
		st.conn = dc
		st.received.Store(dc.received.Load())
		dc.framer.begin(st.method)
	}
	st.info.gotConn(ci)
}

// errInterimResponses fails a round trip whose interim responses outgrew
// the response header limit.
var errInterimResponses = errors.New("interim (1xx) responses exceeded the response header limit")

// got1xx counts an interim response's head, which ReverseProxy relays to
// the client (RFC 9110 Section 15.2), against the response header limit.
// Once net/http hands a 1xx to a Got1xxResponse hook it resets its own
// header limit and leaves counting them to the hook (net/http
// transport.go, "they're responsible for limiting the number of
// responses"), so without this an upstream could send 1xx heads without
// end, each relayed, until the header timeout. Called on the transport's
// read goroutine, one response at a time.
func (st *reqState) got1xx(code int, h textproto.MIMEHeader) error {
	// ReverseProxy's own hook, called before this one, relayed the
	// interim response and cleared the client's header map.
	st.restoreOwn()
	if st.conn != nil {
		st.received.Store(st.conn.received.Load())
	}
	st.interimLeft -= int64(len("HTTP/1.1 100 \r\n\r\n") + len(http.StatusText(code)))
	for k, vs := range h {
		for _, v := range vs {
			st.interimLeft -= int64(len(k) + len(": \r\n") + len(v))
		}
	}
	if st.interimLeft < 0 {
		return errInterimResponses
	}
	return nil
}

// copyBuffers are shared by every HTTPProxy of the process: a proxy
// borrows a buffer only while it copies one response.
var copyBuffers = newBufferPool()

// NewHTTPProxy returns a handler forwarding to pool. The pool is not closed
// by the proxy.
func NewHTTPProxy(pool *Pool, opts HTTPOptions) *HTTPProxy {
	if opts.ResponseHeaderTimeout <= 0 {
		opts.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if opts.IdleConnTimeout <= 0 {
		opts.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if opts.UpstreamIdleTimeout <= 0 {
		opts.UpstreamIdleTimeout = DefaultUpstreamIdleTimeout
	}
	if opts.RequestBodyTimeout <= 0 {
		opts.RequestBodyTimeout = DefaultRequestBodyTimeout
	}
	if opts.RequestBodyMinRate == 0 {
		opts.RequestBodyMinRate = DefaultRequestBodyMinRate
	}
	if opts.ResponseWriteTimeout <= 0 {
		opts.ResponseWriteTimeout = DefaultResponseWriteTimeout
	}
	if opts.MaxResponseHeaderBytes <= 0 {
		opts.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	for _, n := range []*int{&opts.MaxRequestHeaderFields, &opts.MaxResponseHeaderFields} {
		switch {
		case *n == 0:
			*n = DefaultMaxHeaderFields
		case *n < 0:
			*n = 0 // no cap
		}
	}
	opts.Headers.setDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &HTTPProxy{pool: pool, opts: opts, log: log.With("pool", pool.name),
		headers: newHeaderPolicy(opts.Headers, opts.AllowUnderscoreHeaders)}
	p.transport = &http.Transport{
		// Proxy stays nil: environment proxies must not capture upstream
		// traffic.
		DialContext:            p.dial,
		ResponseHeaderTimeout:  opts.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: opts.MaxResponseHeaderBytes,
		IdleConnTimeout:        opts.IdleConnTimeout,
		MaxIdleConnsPerHost:    opts.MaxIdleConnsPerHost,
		// Bounds the wait for "100 Continue" before the body is sent anyway.
		ExpectContinueTimeout: time.Second,
		// Pass the client's Accept-Encoding through untouched instead of
		// letting the transport ask for gzip and decode it.
		DisableCompression: true,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p.transport,
		FlushInterval:  opts.FlushInterval,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BufferPool:     copyBuffers,
	}
	return p
}

// CloseIdleConnections closes the keep-alive connections to upstreams.
func (p *HTTPProxy) CloseIdleConnections() { p.transport.CloseIdleConnections() }

// ServeHTTP checks r (CheckRequest, CheckRoute), picks an upstream and
// forwards r to it.
func (p *HTTPProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rq, _ := r.Context().Value(requestInfoKey{}).(*request)
	if rq == nil || rq.st.claimed {
		// No WithRequestInfo (or a second proxy for the same request):
		// a state of its own, in a context of its own.
		rq = new(request)
		r = RequestWithContext(r, context.WithValue(r.Context(), requestInfoKey{}, rq))
	}
	st, info := &rq.st, &rq.info
	st.claimed, st.info = true, info
	status, reason := CheckRequest(w, r)
	if status == 0 {
		if status, reason = CheckRoute(r); status != 0 {
			closeAfterRefusal(w, r)
		}
	}
	if max := p.opts.MaxRequestHeaderFields; status == 0 && max > 0 {
		// Over HTTP/1.1 h1guard refused such a head before net/http
		// parsed it; over HTTP/2 and HTTP/3 only the byte limit bounds
		// the fields (about 2,000 under 64 KiB, HPACK and QPACK count 32
		// bytes a field), each copied into the upstream request.
		if n := fieldCount(r.Header); n > max {
			status, reason = http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("the request has %d header fields, more than the %d allowed", n, max)
			closeAfterRefusal(w, r)
		}
	}
	if status != 0 {
		info.Err, info.ClientError = fmt.Errorf("%w: %s", errRefused, reason), true
		WriteRefusal(w, status, reason)
		return
	}
	if err := r.Context().Err(); err != nil {
		// Reset (HTTP/2) or abandoned before it got here: nothing is
		// sent upstream, which is most of what a rapid-reset attack
		// would otherwise cost the upstreams.
		info.Err, info.ClientError = err, true
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	// A copy of the controller's one field: NewResponseController's
	// result does not escape, so this allocates nothing.
	st.ctl = *http.NewResponseController(w)
	// A request without a body (ContentLength 0: an HTTP/2 GET's Body is
	// not http.NoBody) is sent without one (ReverseProxy drops it). Over
	// HTTP/2 and HTTP/3 the content-length the client declared is
	// confirmed by its stream's end (confirmEnd); a declared 0, and a
	// length up to PreReadBody, before the request goes upstream
	// (confirmEmpty, readWhole).
	declaredEmpty := r.ProtoMajor >= 2 && r.ContentLength == 0 && len(r.Header["Content-Length"]) > 0
	var whole []byte // the body, read before the upstream was picked
	if r.Body != nil && r.Body != http.NoBody && (r.ContentLength != 0 || declaredEmpty) {
		st.bodyBuf = clientBody{body: r.Body, ctl: &st.ctl, stall: p.opts.RequestBodyTimeout, minRate: p.opts.RequestBodyMinRate}
		if r.ProtoMajor == 2 && p.opts.RequestBodyTimeout > 0 {
			st.bodyBuf.watch = newStallWatch(&st.ctl, true)
		}
		st.bodyBuf.declared, st.bodyBuf.confirm = r.ContentLength, r.ProtoMajor >= 2 && r.ContentLength >= 0
		st.bodyBuf.req, st.bodyBuf.maxTrailers = r, p.opts.MaxRequestHeaderFields
		st.body = &st.bodyBuf
		defer st.body.finish()
		expectContinue(w, r)
		var err error
		switch {
		case declaredEmpty:
			err = st.body.confirmEmpty()
		case r.ProtoMajor >= 2 && r.ContentLength > 0 && r.ContentLength <= PreReadBody:
			whole, err = st.body.readWhole()
		}
		if err != nil {
			p.refuseBody(w, r, st, err)
			return
		}
	}
	up, err := p.pool.pick(clientAddr(r.RemoteAddr), nil)
	if err != nil {
		info.Err = err
		p.writeError(w, http.StatusServiceUnavailable, "has no healthy upstream")
		return
	}
	defer up.done()
	info.Upstream = up.addr
	st.up = up
	st.interimLeft = p.opts.MaxResponseHeaderBytes
	st.trace = httptrace.ClientTrace{Got1xxResponse: st.got1xx, GotConn: st.gotConn, WroteRequest: st.wroteRequest}
	out := r.WithContext(httptrace.WithClientTrace(r.Context(), &st.trace))
	switch {
	case whole != nil:
		out.Body = io.NopCloser(bytes.NewReader(whole))
		st.hasBody, st.preRead = true, true
	case st.body != nil && !declaredEmpty:
		out.Body = st.body
		st.hasBody = true
	}
	st.method = r.Method
	st.own = st.ownBuf[:0]
	for k, v := range w.Header() {
		st.own = append(st.own, ownedHeader{k, v})
	}
	st.ww = writeDeadline{ResponseWriter: w, ctl: &st.ctl, timeout: p.opts.ResponseWriteTimeout, own: st}
	if r.ProtoMajor == 2 {
		st.ww.watch = newStallWatch(&st.ctl, false)
	}
	defer st.ww.finish()
	p.rp.ServeHTTP(&st.ww, out)
	if st.cut != nil {
		// ReverseProxy ends a body it could not copy whole with
		// panic(http.ErrAbortHandler) only under net/http's server (it
		// looks for http.ServerContextKey); under quic-go's it returned,
		// and the stream ended with FIN, so an HTTP/3 client took a
		// chunked body cut by its upstream for a whole one. The abort
		// resets the stream instead (H3_INTERNAL_ERROR), as net/http
		// resets an HTTP/2 stream and closes an HTTP/1.1 connection.
		panic(http.ErrAbortHandler)
	}
}

// expectContinue answers a request with a body that asked for it
// (Expect: 100-continue, RFC 9110 Section 10.1.1) with 100 Continue as
// soon as pqedge reads the body, and takes the expectation off the
// request, as nginx does: pqedge, not the upstream, decides when the body
// comes. A body pqedge reads whole before it picks an upstream
// (PreReadBody) reaches no upstream before it ends, so an upstream's 100
// would come after it, a second one. A streamed body forwarded with the
// expectation made Go's transport wait for the upstream's 100 before it
// read the body, and so before the client got its own: a second (the
// transport's ExpectContinueTimeout) on every upload to an upstream that
// sends no 100 (many do not), and over HTTP/3 the client's own timeout
// (curl: 1 s). Go's HTTP/1.1 and HTTP/2 servers send the 100 themselves
// at the body's first read; quic-go's HTTP/3 server does not, so pqedge
// does.
func expectContinue(w http.ResponseWriter, r *http.Request) {
	if !httpguts.HeaderValuesContainsToken(r.Header["Expect"], "100-continue") {
		return
	}
	r.Header.Del("Expect")
	if r.ProtoMajor == 3 {
		w.WriteHeader(http.StatusContinue)
	}
}

// PreReadBody is the largest request body that an HTTP/2 or HTTP/3
// request declaring its content-length has read whole, and its stream's
// end seen, before an upstream is picked: a body that does not add up to
// its length (RFC 9113 Section 8.1.1, RFC 9114 Section 4.1.2) is then
// answered 400 without any upstream hearing of it, and counts in the
// connection's budget of refused requests (internal/h2guard), where
// before its headers went upstream at once and a flood of them, each
// within the stream limit, cost an upstream request apiece. Larger
// bodies are streamed. It bounds the memory: at most PreReadBody a
// stream, 4 MiB for a connection's 250 streams.
const PreReadBody = 16 << 10

// refuseBody answers a request whose body failed before any upstream was
// picked: the client's error (400, 408), or nobody's to read (499).
func (p *HTTPProxy) refuseBody(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	if e := st.body.readErr(); e != nil {
		err = e
	}
	st.info.Err, st.info.ClientError = err, true
	code, what := clientStatus(err, r.Context().Err() != nil, r.ProtoMajor == 1)
	if code == StatusClientClosedRequest {
		w.WriteHeader(code)
		return
	}
	WriteRefusal(w, code, what)
}

func stateOf(r *http.Request) *reqState {
	return &r.Context().Value(requestInfoKey{}).(*request).st
}

// rewrite builds the upstream request. ReverseProxy has already removed
// hop-by-hop and X-Forwarded-* headers from pr.Out.
func (p *HTTPProxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = st.up.key
	// Keep the client's Host: the upstream serves the public name.
	pr.Out.Host = pr.In.Host
	// ReverseProxy has dropped every query parameter url.ParseQuery cannot
	// read ("%zz", anything after a ';') and re-encoded the rest, which
	// silently loses the client's data (golang/go#54663 made it so, for
	// proxies that decide on parsed parameters). pqedge decides on no
	// query, so the upstream gets the client's as it came, as nginx
	// passes it, but for what no request line can carry, refused by the
	// guard (badQueryByte), and what browsers would have encoded, encoded
	// (requestLineQuery).
	pr.Out.URL.RawQuery = requestLineQuery(pr.In.URL.RawQuery)
	// Remove client-sent copies, in every spelling, so an upstream never
	// sees spoofed facts or addresses; then set pqedge's own.
	p.headers.filter(pr.Out.Header)
	p.prepareTrailers(st, pr.In, pr.Out)
	cf := connFactsFrom(pr.In.Context())
	setForwarded(pr, cf)
	if cf == nil {
		return
	}
	// The values were made once for the connection; every request shares
	// them (nobody modifies a header value in place).
	h, names := pr.Out.Header, &p.opts.Headers
	for _, f := range []struct {
		name string
		val  []string
	}{{names.Group, cf.group}, {names.Signature, cf.signature}, {names.Version, cf.version}, {names.Cipher, cf.cipher}, {names.PQ, cf.pq}} {
		if f.val != nil {
			h[f.name] = f.val
		}
	}
}

// dial is the transport's DialContext: addr is an upstream key set by
// rewrite.
func (p *HTTPProxy) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	u := p.pool.byKey(addr)
	if u == nil {
		return nil, fmt.Errorf("failed to dial: %q is not an upstream of pool %q", addr, p.pool.name)
	}
	c, err := p.pool.dialUpstream(ctx, u)
	if err != nil {
		return nil, err
	}
	dc := &deadlineConn{Conn: c, timeout: p.opts.UpstreamIdleTimeout}
	dc.framer.maxFields = p.opts.MaxResponseHeaderFields
	dc.unsolicited = func(err error) {
		p.log.Warn("upstream sent more than its response; connection dropped", "upstream", u.addr, "err", err)
		p.pool.reportFailure(u, err)
	}
	if tc, ok := c.(*tls.Conn); ok {
		// Read once here: each request on the connection reports it.
		cs := tc.ConnectionState()
		f := factsOf(&cs)
		dc.origin = &f
	}
	return dc, nil
}

// userResponseError marks an error returned by the ModifyResponse option.
type userResponseError struct{ err error }

func (e userResponseError) Error() string { return e.err.Error() }
func (e userResponseError) Unwrap() error { return e.err }

// badResponseError fails a response net/http's transport accepted but no
// client may be given; it counts against the upstream.
type badResponseError struct{ reason string }

func (e badResponseError) Error() string { return "invalid upstream response: " + e.reason }

func (p *HTTPProxy) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request)
	if c := resp.StatusCode; c < 100 || c > 599 {
		// RFC 9110 Section 15: a status code is 100 to 599. The
		// transport reads any three digits; net/http's server panics on
		// writing one below 100 (the client saw a truncated 200), and
		// passes 600-999 on to clients that know no such class.
		return badResponseError{fmt.Sprintf("status code %03d is outside 100-599 (RFC 9110 section 15)", c)}
	}
	if max := p.opts.MaxResponseHeaderFields; max > 0 {
		// The framer refuses such a head before the transport parses it;
		// this is for a connection it stopped following (passthrough).
		if n := fieldCount(resp.Header); n > max {
			return badResponseError{fmt.Sprintf("%d header fields, more than the %d allowed", n, max)}
		}
	}
	st.keepOwnHeaders(resp.Header)
	// The announced trailers: ReverseProxy announces their names to the
	// client from this map; those that arrive unannounced are filtered
	// at the body's end (upstreamBody).
	st.filterResponseTrailers(resp.Trailer)
	if resp.Close && st.conn != nil {
		// RFC 9110 Section 7.6.1: the fields Connection names are this
		// hop's; the transport took the header away with its "close".
		for _, name := range st.conn.framer.fieldsNamedByConnection() {
			resp.Header.Del(name)
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		// A tunnel (its body is the connection) or no body: served,
		// unless the upstream sent a body all the same (a 204, 304 or an
		// answer to HEAD with one; counted by the connection).
		if !st.unsolicited() {
			p.pool.reportSuccess(st.up)
		}
	} else {
		st.respBody = upstreamBody{ReadCloser: resp.Body, p: p, st: st, ctx: resp.Request.Context(), resp: resp}
		resp.Body = &st.respBody
	}
	if p.opts.ModifyResponse != nil {
		if err := p.opts.ModifyResponse(resp); err != nil {
			return userResponseError{err}
		}
	}
	return nil
}

// errorHandler answers a failed round trip. The client's failures (its
// body broke, stalled or was cut off; it left) are answered without
// blaming the upstream; only the upstream's own count toward ejection.
// Dial errors were already counted against the upstream by dialUpstream;
// a round trip that failed before it took an upstream connection otherwise
// is the request's (400).
func (p *HTTPProxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	st.info.Err = err
	var bodyErr error
	if st.body != nil {
		bodyErr = st.body.readErr()
	}
	clientGone := r.Context().Err() != nil
	var de *dialError
	var ne net.Error
	var ue userResponseError
	var bre badResponseError
	var te *UpstreamTLSError
	var late *UpstreamTLSError // an origin's alert after the handshake
	if st.up.tls != nil {
		late = st.up.tls.lateFailure(st.up.addr, err)
	}
	switch {
	case bodyErr != nil || clientGone:
		st.info.ClientError = true
		if bodyErr != nil {
			st.info.Err = bodyErr
		}
		code, what := clientStatus(bodyErr, clientGone, r.ProtoMajor == 1)
		if code == StatusClientClosedRequest {
			// Nobody reads it; the status keeps access logs honest.
			w.WriteHeader(code)
			return
		}
		// The body was not read to its end: an HTTP/1.x connection's next
		// bytes are not a request. An HTTP/2 stream ends on its own, and
		// "Connection: close" there would have net/http send GOAWAY for
		// the whole connection.
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		WriteRefusal(w, code, what)
	case errors.As(err, &bre):
		p.pool.reportFailure(st.up, err)
		p.log.Warn("upstream response refused", "upstream", st.up.addr, "err", err)
		p.writeError(w, http.StatusBadGateway, "sent an invalid response")
	case errors.As(err, &ue):
		p.log.Warn("response rejected by hook", "upstream", st.up.addr, "err", err)
		p.writeError(w, http.StatusBadGateway, "response rejected")
	case errors.As(err, &te):
		// Counted against the upstream by dialUpstream.
		p.tlsFailed(w, st, te)
	case late != nil:
		p.pool.reportFailure(st.up, late)
		p.pool.tlsHandshake(UpstreamHandshake{Pool: p.pool.name, Upstream: st.up.addr, Err: late})
		p.tlsFailed(w, st, late)
	case errors.As(err, &de):
		p.log.Warn("upstream unreachable", "upstream", st.up.addr, "err", err)
		p.writeError(w, http.StatusBadGateway, "unreachable")
	case !st.reached:
		// The transport refused the request before it took a connection
		// (a dial's failure is a dialError, above): its own checks of the
		// method and the header fields, which no upstream ever saw. The
		// request's fault, never the upstream's (issue #12, kind 3).
		st.info.ClientError = true
		closeAfterRefusal(w, r)
		WriteRefusal(w, http.StatusBadRequest, "the request cannot be sent upstream: "+err.Error())
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		p.pool.reportFailure(st.up, err)
		p.log.Warn("upstream timeout", "upstream", st.up.addr, "err", err)
		p.writeError(w, http.StatusGatewayTimeout, "did not answer in time")
	case st.hasBody && !st.wrote.Load() && st.upstreamSpoke():
		// The upstream answered, or began to, and closed or reset the
		// connection before it took the whole body: it refused the
		// request (an upstream answering 413 to a body over its limit
		// and closing at once; its answer is often lost with the reset),
		// which a client can repeat at will. Not counted: only a failure
		// after the upstream took the whole request, a close without a
		// byte of answer (a worker crashing mid-upload), a timeout or a
		// failed dial says the upstream is failing (issue #12, kind 3).
		p.log.Warn("upstream closed before it read the whole request", "upstream", st.up.addr, "err", err)
		p.writeError(w, http.StatusBadGateway, "closed the connection before it read the whole request")
	default:
		p.pool.reportFailure(st.up, err)
		p.log.Warn("upstream error", "upstream", st.up.addr, "err", err)
		p.writeError(w, http.StatusBadGateway, "failed")
	}
}

// tlsFailed answers a request whose origin leg failed its TLS handshake.
func (p *HTTPProxy) tlsFailed(w http.ResponseWriter, st *reqState, te *UpstreamTLSError) {
	st.info.Err, st.info.UpstreamTLS = te, nil
	p.log.Warn("upstream TLS handshake failed", "upstream", st.up.addr, "reason", te.Reason, "err", te)
	p.writeError(w, http.StatusBadGateway, "TLS handshake failed")
}

// clientAddr is the IP of a request's RemoteAddr ("ip:port"), for the
// balance policy; invalid when it has none (a unix socket client).
func clientAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// writeError writes a short plain-text answer such as
// `502 Bad Gateway: upstream pool "app" unreachable`.
func (p *HTTPProxy) writeError(w http.ResponseWriter, code int, what string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s: upstream pool %q %s\n", code, http.StatusText(code), p.pool.name, what)
}
