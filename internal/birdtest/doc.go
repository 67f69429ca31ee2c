// Package birdtest runs real BIRD 2 routers in network namespaces for
// pqedge's anycast tests, and parses what birdc prints.
//
// [Start] builds a [Lab]: a router namespace and one or more edge
// namespaces, each edge joined to the router by a veth and an eBGP session
// per address family. An edge's BIRD announces the addresses of the
// interfaces named in [Options] (`protocol direct`), which is how pqedge
// announces a prefix; the router's table, read with `birdc show route`
// ([ParseRoutes]), is what the rest of the network would learn. [NetNS]
// alone gives a test a namespace to bind or route in.
//
// It needs root, the ip command and BIRD 2 (Debian bird2, installed by
// scripts/peers); without them a test is skipped, or fails under
// PQEDGE_REQUIRE_PEERS=1 (see package peers). Every namespace, veth and
// process is removed when the test ends, failed or not, and namespaces left
// by a test binary that died are removed by the next run.
//
// It is for tests only; nothing in the pqedge binary imports it.
package birdtest
