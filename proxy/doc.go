// Package proxy forwards the traffic pqedge has terminated to upstreams:
// HTTP requests through a reverse proxy, and raw byte streams (for example
// DNS over TLS, or any TLS-wrapped TCP service) spliced to a TCP or unix
// socket upstream, optionally behind a PROXY protocol header.
//
// It is not a TLS server: the caller accepts connections, completes the
// handshake with crypto/tls and hands the proxy either HTTP requests or an
// accepted net.Conn. It reads no configuration file; every type takes plain
// option structs whose zero fields mean a documented default. It speaks
// only HTTP/1.1 to upstreams (no h2 or h2c) and does not retry requests
// that reached an upstream.
//
// # Pools and health
//
// A Pool is a named list of upstreams ("host:port", "unix:/path" or
// "https://host:port") picked by a Policy among those that are usable:
// passing active health checks and not ejected. Active checks run every HealthOptions.Interval per upstream:
// an HTTP GET of HealthOptions.Path that must answer 2xx or 3xx, or a plain
// connect when Path is empty (stream pools). HealthyThreshold and
// UnhealthyThreshold consecutive results flip the verdict. Every upstream
// starts usable and is checked at once.
//
// Passive ejection watches the data path: MaxFails consecutive failures
// (connect errors, and transport errors answered with 502 or 504) eject the
// upstream for EjectFor. Each failure also starts an out-of-band probe, with
// at most one probe in flight per upstream, so a dead upstream is noticed
// before the next interval. Pool.Upstreams lists the state for metrics and
// PoolOptions.OnHealthChange reports each change.
//
// # TLS to origins
//
// An https:// upstream is reached over TLS (PoolOptions.TLS): verified
// against the system roots or given ones, under the upstream's host name
// or a given one (SNI), with an optional client certificate, classical or
// ML-DSA. X25519MLKEM768 is offered first, then the other hybrids, then
// x25519 and secp256r1 (the pqtls pq-preferred preset); with
// UpstreamTLS.PQRequired only the hybrids, over TLS 1.3 (pq-only), so an
// origin that will not negotiate one fails the handshake. A failed
// handshake is an UpstreamTLSError, classed by reason; it answers 502 and
// counts against the upstream like a refused connect, and active checks of
// such an upstream include the handshake. A pool's upstreams are all
// https:// or none. The proxy still speaks HTTP/1.1 to origins (ALPN
// "http/1.1"; no h2), and RequestInfo.UpstreamTLS and
// PoolOptions.OnTLSHandshake report what each origin leg negotiated.
//
// # HTTP
//
// HTTPProxy is an http.Handler built on httputil.ReverseProxy with Rewrite.
// It sets X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP
// and Forwarded (RFC 7239), keeps the client's Host header, and forwards
// what the client's TLS handshake negotiated in request headers
// (PQEdge-TLS-Group, PQEdge-TLS-PQ, PQEdge-TLS-Signature,
// PQEdge-TLS-Version, PQEdge-TLS-Cipher by default), taken from the
// HandshakeFacts the server stored in the request context with
// WithHandshakeFacts. Client-sent copies of all of these are removed in
// every spelling CGI-style servers fold together ("X_Forwarded_For",
// "pqedge_tls_pq"), as is every "PQEdge-*" and "X-Forwarded-*" name, every
// name with a byte other than a letter, a digit, "-" or "_" (PHP folds "."
// into "_"), and by default every header name with "_"
// (HTTPOptions.AllowUnderscoreHeaders), so an upstream may trust them.
//
// A client's request trailers go upstream after the last chunk, the same
// names removed and those RFC 9110 Section 6.5.1 rules out as trailers; a
// server hands a request on with RequestWithContext, not
// http.Request.WithContext, or trailers that arrive on the request its
// HTTP server handed over are lost.
//
// Failures answer with a short plain-text body: 502 when the upstream cannot
// be reached or breaks the connection, 503 when the pool has no usable
// upstream, 504 when the response headers do not arrive within
// HTTPOptions.ResponseHeaderTimeout. WithRequestInfo lets the server learn
// which upstream served a request, and why it failed.
//
// # Request rules
//
// CheckRequest is the router's first step, and HTTPProxy repeats it: it
// closes HTTP/1.x connections whose framing net/http may have hidden,
// refuses CONNECT (405), lets only WebSocket upgrades through (h2c and
// other Upgrade tokens are stripped so the upstream answers normally), and
// normalises the path (NormalizePath: empty segments merged, RFC 3986 dot
// segments and percent-encoding) so that routes match, and upstreams
// receive, the same path; CheckRoute refuses encoded slashes unless the
// route allows them and keeps empty segments for routes that ask
// (WithRouteOptions).
//
// # Whose fault
//
// Only the upstream's own failures count toward its ejection. A request
// refused by the rules, a request body that is malformed (bad chunking),
// stalls (HTTPOptions.RequestBodyTimeout), trickles below
// HTTPOptions.RequestBodyMinRate, or is cut off, and a client that leaves,
// are answered as the client's (400, 405, 408, 413, or 499 in the logs)
// and marked RequestInfo.ClientError; a pool cannot be taken down by
// sending it bad requests.
//
// # Deadlines and caps
//
// Every phase is bounded: the client's body by RequestBodyTimeout and
// RequestBodyMinRate (HTTP/1.1 and HTTP/2, through
// http.ResponseController), the upstream's response headers by
// ResponseHeaderTimeout and MaxResponseHeaderBytes, each read and write on
// the upstream connection by UpstreamIdleTimeout, and each write to the
// client (WebSockets included) by ResponseWriteTimeout.
//
// # Streams
//
// StreamProxy splices an accepted connection (typically a *tls.Conn) to an
// upstream of a pool, byte for byte in both directions. It can first send a
// PROXY protocol v1 or v2 header carrying the client's address; v2 also
// carries the TLS version, cipher and key-exchange group. When one side
// finishes writing, the other side's write half is closed, so no byte is
// lost in either direction. An idle timeout ends streams with no traffic
// either way, and Shutdown stops accepting and waits for streams to finish.
package proxy
