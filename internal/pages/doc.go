// Package pages serves pqedge's built-in pages: inspect (the visitor's own
// TLS connection: group, signature, what the ClientHello offered, and what
// would change with ML-KEM), compat (the browser probes the [compat]
// matrix's listeners) and adoption (the post-quantum share of handshakes,
// an admin page).
//
// It renders; it does not observe. The server records handshakes and hands
// the pages what they show: the connection in each request's context
// (WithConn), the matrix and a log of its handshakes (Compat, CompatLog),
// and the per-minute counters (Adoption). Every page answers HTML to people
// and JSON to programs (?format=json or Accept: application/json).
package pages
