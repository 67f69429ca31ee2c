package bench

import "time"

// Network is what the time-to-first-byte model assumes about the path.
type Network struct {
	RTT      time.Duration
	InitCwnd int // initial congestion window, segments (RFC 6928: 10)
	MSS      int // bytes per segment (1,460 on Ethernet paths)
}

// DefaultNetwork is a 50ms path with a 10-segment initial window.
var DefaultNetwork = Network{RTT: 50 * time.Millisecond, InitCwnd: 10, MSS: 1460}

// ModelDescription states the model ModelTTFB computes, for reports.
const ModelDescription = "TTFB = (1 + extra round trips) x RTT + server CPU per handshake; " +
	"extra round trips are those TCP slow start needs to deliver the server's first flight " +
	"beyond the initial window (the window doubles each round trip: W, 2W, 4W segments); " +
	"the TCP handshake, the client's CPU, loss, pacing and the request after the handshake are not modeled"

// ExtraRoundTrips is how many round trips beyond the first the server's
// first flight of flightBytes needs under slow start: the first round trip
// carries InitCwnd segments and each later one twice the previous.
func (n Network) ExtraRoundTrips(flightBytes int) int {
	if flightBytes <= 0 || n.InitCwnd <= 0 || n.MSS <= 0 {
		return 0
	}
	segments := (flightBytes + n.MSS - 1) / n.MSS
	extra := 0
	window, sent := n.InitCwnd, n.InitCwnd
	for sent < segments {
		window *= 2
		sent += window
		extra++
	}
	return extra
}

// ModelTTFB is the modeled time from the ClientHello leaving the client
// to the server's first flight fully arrived: see ModelDescription.
func (n Network) ModelTTFB(flightBytes int, serverCPU time.Duration) time.Duration {
	return time.Duration(1+n.ExtraRoundTrips(flightBytes))*n.RTT + serverCPU
}
