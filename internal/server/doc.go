// Package server wires pqedge together: it opens the listeners of a config,
// terminates TLS with each site's post-quantum policy and certificates,
// records every handshake, routes requests to upstream pools or built-in
// handlers, serves the admin endpoints, and swaps configurations on reload
// without dropping connections.
//
// It holds no protocol logic of its own: TLS policy and handshake records
// are package pqtls, certificates package certs, proxying package proxy.
//
// # Generations
//
// Each loaded config becomes a generation: its sites, TLS configs, pools and
// one http.Server per listener. Sockets outlive generations: one accept loop
// per socket hands each new connection to the current generation, so a
// reload never closes a listening socket that the new config still uses and
// never refuses a connection. The old generation then shuts down gracefully:
// in-flight requests and streams finish, idle keep-alive connections close.
//
// # Handshakes
//
// The accept loop wraps each connection in a pqtls.CaptureConn (the raw
// ClientHello), runs the TLS handshake itself under the handshake timeout,
// and records the outcome (group, signature, client family, duration) in
// metrics before the connection reaches HTTP or a stream.
package server
