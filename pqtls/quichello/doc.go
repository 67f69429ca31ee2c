// Package quichello recovers the TLS ClientHello a QUIC client sent, from
// the UDP datagrams the server received, so that pqedge can tell over
// HTTP/3 what it tells over TCP: the groups and key shares offered, the
// signature algorithms, ALPN, extensions and the JA4 fingerprint (with
// its "q" prefix).
//
// crypto/tls parses the ClientHello that quic-go hands it but exposes
// neither its bytes nor its key shares, and quic-go keeps the decrypted
// CRYPTO stream to itself. The client's Initial packets are protected only
// with keys anyone can derive from the Destination Connection ID in their
// header (RFC 9001 Section 5.2), so the server can open them a second
// time, on the side, without touching the connection.
//
// It is not a QUIC implementation: it reads only client Initial packets
// (QUIC version 1, RFC 9000 Section 17.2.2, and version 2, RFC 9369), never
// sends anything, and steps aside once the ClientHello is complete.
//
// # Pieces
//
//   - Recorder follows one connection attempt: feed it the datagrams the
//     client sent, in the order received; it removes header protection,
//     decrypts (AES-128-GCM, RFC 9001 Sections 5.3 and 5.4), walks the
//     frames, reassembles the CRYPTO frames by offset (out of order,
//     duplicated, spread over packets and datagrams) and hands the message
//     to pqtls.ParseClientHello. It counts the Initial packets and the
//     datagrams the ClientHello took: an X25519MLKEM768 ClientHello (about
//     1.8 KB) does not fit one 1,200-byte Initial.
//   - Tracker keeps one Recorder per client address for the attempts in
//     progress, bounded in number, bytes and time, and answers
//     ClientHello(remoteAddr) from GetConfigForClient, where quic-go puts
//     the client's UDP address in ClientHelloInfo.Conn. Unreadable tells a
//     server, when quic-go opens a connection, that the Initial behind it
//     could not be opened, so it can refuse it at once.
//   - PacketConn wraps the server's *net.UDPConn for quic.Transport and
//     shows every received long-header Initial to a Tracker. quic-go still
//     sees a UDP socket with batched reads, GSO and ECN; a short-header
//     packet (all traffic after the handshake) costs one byte test.
//
// # Limits
//
// Everything buffered is capped: the CRYPTO bytes of one attempt (16 KiB
// by default, quic-go's own limit), the CRYPTO fragments kept apart
// before they join, the datagrams one attempt may use, the attempts a
// Tracker follows and how long it keeps them. Datagrams that cannot be
// read (not QUIC, failed authentication, a spoofed copy) are skipped and
// never end an attempt; a client that breaks the protocol in an
// authenticated packet (an unknown frame type in an Initial, CRYPTO bytes
// that contradict earlier ones) ends its attempt with an error, as it
// would end the connection (RFC 9000 Sections 12.4 and 19.6).
package quichello
