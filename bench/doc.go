// Package bench measures what pqedge costs a machine: for handshakes,
// handshakes per second, latency percentiles, bytes on the wire, the size
// of the server's first flight against TCP's initial window and the
// server's CPU time per handshake; for proxied traffic, CPU per request,
// per MiB and per connection, latency percentiles and memory per idle
// connection. CPU and memory are read from /proc of the server under test.
//
// It drives handshakes with pqtls/leanclient, a client that spends little
// CPU of its own (precomputed key shares, no chain verification), so that
// the numbers describe the server under test, and proxied requests with
// h2load from the Debian peer root. It is what `pqedge bench handshake`,
// `pqedge bench matrix`, `pqedge bench proxy` and `pqedge bench overload`
// run.
//
// It is not a correctness test of the server (nothing is verified unless
// asked), and not portable: CPU and memory come from /proc and CPU pinning
// from sched_setaffinity, so it is Linux only.
//
// # One target
//
// Run makes handshakes against one address, either closed loop (each of
// Concurrency workers starts a handshake as soon as its previous one ends)
// or open loop (handshakes start at a fixed Rate whatever the server does,
// and each latency is measured from the time the handshake was meant to
// start, so a stalled server shows as latency instead of silently slowing
// the load: no coordinated omission). Every handshake has a deadline;
// failures are counted by leanclient.ErrorKind and a run in which nothing
// succeeded reports no numbers at all (ErrNoSuccess).
//
// # The matrix
//
// Matrix runs every group x certificate algorithm x server (pqedge, a plain
// crypto/tls server, and nginx with OpenSSL 3.5 when its root is present)
// with identical certificates, each server pinned to one core and the
// client to the other, repeats each cell, measures the crypto primitives
// alone for comparison, and writes CSV, JSON and an SVG chart.
//
// # Over QUIC
//
// With Options.Transport TransportQUIC the handshakes are QUIC ones
// (quic-go over crypto/tls, ALPN h3, pqtls/quicclient), against the same
// port over UDP. Before the load, a few handshakes over a path with an
// emulated round-trip time (ShapeRTT, applied in the client's socket)
// measure the handshake's shape: the Initial packets of the ClientHello,
// the anti-amplification budget (RFC 9000 Section 8.1: three times what
// the client sent before the server could answer) against the bytes the
// server sent up to its Finished, and the round trips that took. The
// matrix's Transports axis adds a QUIC cell beside each TCP cell for the
// servers that serve HTTP/3 (pqedge with http3 = true, the plain server
// with `serve-plain -quic`, nginx with `listen ... quic`), and
// CompareTransports says which chains cost an extra round trip over QUIC
// but not over TCP, and the reverse.
//
// # Proxied traffic
//
// Proxy puts fronts (pqedge, ServePlainProxy as the Go floor, nginx) in
// front of the same upstream, one fresh front per run pinned to one core,
// with the upstream, the load generator and the harness on the other, and
// measures them mode by mode: keep-alive HTTP/1.1 and HTTP/2 requests
// (h2load), bytes through a TLS stream listener, handshakes with one
// request each, and the memory of held idle and pre-handshake connections.
// The Go fronts' allocations, collections and live heap come from their
// debug listener (expvar, net/http/pprof), which also yields profiles.
//
// # Overload
//
// Overload asks whether a flood of new handshakes starves the connections
// a front has already established: the p99 of keep-alive requests sent at
// a fixed rate, alone and under a flood at several times the front's
// measured handshake capacity, from many loopback source addresses
// (SpreadDial), with pqedge's [limits] counters read from its metrics.
// The flood replays ClientHellos by default (Options.Replay): the front
// does all of its cryptography and the flood client none, as in a real
// attack, so one client core can offer several times the capacity of one
// front core.
//
// # Time to first byte
//
// ModelTTFB turns a first-flight size into a modeled time to first byte at
// a given round-trip time and initial congestion window; see its doc for
// the model and what it leaves out.
package bench
