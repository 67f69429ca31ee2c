package server

// Goroutine stack reserved up front, at a shallow point, for a handshake
// and for a request, by reserveHandshakeStack and reserveRequestStack.
//
// Why: a goroutine starts with a small stack (2 KiB, or the runtime's
// running average), and the runtime doubles it when a call would
// overflow it, copying the stack and adjusting every frame on it. The
// handshake path (crypto/tls, ML-KEM) and the request path (router,
// proxy.HTTPProxy, httputil.ReverseProxy, net/http's header writing) grew
// deep inside, each doubling walking tens of frames: runtime.newstack was
// about 45 µs of pqedge's CPU per handshake + request + close, against
// 21 µs for the plain Go proxy, whose net/http goroutine serves the
// request on the stack its handshake already grew (profiles in
// docs/BENCHMARKS.md, "Handshake with one request"). pqedge handshakes on
// its own goroutine and net/http serves on a new one, and the collector
// shrinks idle connections' stacks between requests, so both paths grow
// from small.
//
// The sizes are powers of two, the sizes the runtime grows to: the
// handshake goroutine ends with its handshake, so 32 KiB costs nothing
// after it; the request reserve stays at 16 KiB, because a keep-alive
// connection's goroutine keeps its stack while idle (until a collection
// shrinks it) and must not hold more than its requests need. A path that
// needs more grows past the reserve as before.
const (
	handshakeStack = 32 << 10
	requestStack   = 16 << 10
	// stackSlack is left for the frames above the reserving call and the
	// runtime's guard, so that the stack grows to the size, not past it.
	stackSlack = 6 << 10
)

// reserveHandshakeStack and reserveRequestStack have frames so large
// that, on a smaller stack, the runtime grows it at their call, once, to
// the size needed, copying only the few frames above. On a stack already
// large enough they cost a call and clearing the frame (well under a
// microsecond).
//
//go:noinline
func reserveHandshakeStack(i int) byte {
	var pad [handshakeStack - stackSlack]byte
	pad[i] = 1
	return pad[len(pad)-1-i]
}

//go:noinline
func reserveRequestStack(i int) byte {
	var pad [requestStack - stackSlack]byte
	pad[i] = 1
	return pad[len(pad)-1-i]
}
