// Package server runs pqedge: it owns the components whose state outlives a
// configuration, and applies each configuration to them as one transaction.
// It holds no protocol logic of its own: TLS policy and handshake records
// are package pqtls, certificates package certs, proxying package proxy,
// the plan of a config package plan, the built-in pages package pages.
//
// # Lifecycle
//
//	New       components, then apply(config) as the first transaction
//	Reload    apply(config); the previous generation retires and drains
//	Shutdown  not ready and every anycast prefix withdrawn; cancel a
//	          transaction in progress; keep accepting for the withdraw
//	          grace; stop accepting; drain every generation; close the
//	          components (lameduck.go)
//
// # The transaction (txn.go)
//
// New and Reload share one transaction, prepare then commit, or abort:
//
//	prepare   plan (no I/O) → [fleet] unchanged → certificates → sockets →
//	          anycast device → ACME managers → generation (pools, with
//	          their origin TLS files) → admin listener → ACME orders
//	          (network I/O)
//	commit    under the server lock: publish the generation, start its
//	          sockets, close the sockets it no longer uses, retire the
//	          previous generation
//	abort     close what prepare opened; the running generation is untouched
//
// Prepare runs outside the server lock and is canceled by Shutdown; no lock
// is held across network I/O. A refused config, at any step, leaves the
// running one serving and is counted in pqedge_config_reloads_total.
//
// # Components (state that outlives a generation)
//
//   - sockets (sockets.go): listening sockets by address; an address the
//     new config still binds (unchanged, or the port a port-0 listener was
//     given, written out) keeps its socket across reloads, so no
//     connection is refused.
//     An HTTP/3 listener's UDP socket is one too, with its QUIC transport
//     and ClientHello tracker (quic.go).
//   - upstream health (proxy.Registry): an upstream that is down stays down
//     across reloads; metrics exist for upstreams some live generation uses.
//   - session-ticket keys (tickets.Keeper): resumption survives reloads;
//     each site's tickets open only under its ticket scope.
//   - certificates (certs.go): each site's chains, rotated when their files
//     change or their local leaves are due, without a reload.
//   - ACME managers (acme.go): one per account and CA, reused by reloads.
//   - handshake sinks (handshake.go): metrics, adoption counters, the compat
//     log and the OnHandshake hook receive one event per handshake.
//   - anycast (anycast.go): the TUN device and the Controller announcing
//     the [anycast] prefixes, fed each prefix's health; made by the first
//     config with the block, closed after the drain.
//   - fleet (fleet.go): the node's connection to its fleet's shared store,
//     made from the first config's [fleet]: the Keeper's key source and the
//     ACME managers' storage. A reload never swaps it; one that changes
//     [fleet] is refused.
//
// # Readiness (readiness.go)
//
// /readyz is 200 only when the server is started, not shutting down, every
// listener is bound, every site's certificates are valid and every pool of
// admin.ready_pools has a healthy upstream; the same checks, per listener,
// decide whether an anycast prefix is healthy. A fleet's store is listed
// but never makes a node unready: it is not in the handshake path.
//
// # A connection
//
// Each socket's accept loop runs, per connection: capture the ClientHello
// (pqtls.CaptureConn), the TLS handshake under the handshake timeout (the
// site by SNI through the listener's resolver, its certificate and policy),
// one HandshakeEvent to the sinks, the release of the captured bytes (the
// connection keeps a parsed, detached ClientHello), then the hand-off to
// the current generation's HTTP server or stream proxy (accept.go; what
// crypto/tls sees as the connection, edgeConn, is in edgeconn.go). A
// generation being retired takes no new connection; one that it already took is served to
// its end (drain.go). A QUIC connection takes the same steps inside quic-go,
// through its transport's callbacks (quic_accept.go).
package server
