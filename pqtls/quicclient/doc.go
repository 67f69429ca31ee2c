// Package quicclient makes measured QUIC handshakes for `pqedge bench`
// and `pqedge probe`: quic-go over the standard library's crypto/tls, so
// the groups and signatures offered are those of a Go 1.27 client
// (X25519MLKEM768 first, ML-DSA signatures listed).
//
// Dial makes one handshake and reports what was negotiated and what it
// cost on the wire: bytes and datagrams each way, the client's own
// ClientHello as it left (read back from its Initial packets with
// pqtls/quichello, so the Initial packets it took are counted), the
// server's handshake bytes against the anti-amplification budget of RFC
// 9000 Section 8.1 (three times what the client sent before the server
// could answer), and, on a path with an emulated round-trip time, the
// round trips until the server's Finished arrived.
//
// # Round trips
//
// Loopback has no delay to speak of, so flights cannot be told apart by
// timing there, and this kernel has no netem. With Config.RTT set, the
// client's socket holds every datagram from the server back by RTT before
// quic-go reads it: the path has that round-trip time for everything
// QUIC does (its acknowledgements, its loss timers and the server's
// anti-amplification wait all run over it). A datagram that arrives more
// than RTT/2 after the previous one starts a new server flight, and
// RoundTrips counts the flights up to the one that carried the server's
// Finished (the last datagram quic-go read before the handshake
// completed). One round trip is the best case; a server that must wait
// for the client before it may send the rest of its certificate chain
// takes two.
//
// It is not a general QUIC client: no requests are sent, the chain is
// never verified (probes meet private CAs; benchmarks measure servers),
// and a client cannot choose its signature algorithms in crypto/tls.
package quicclient
