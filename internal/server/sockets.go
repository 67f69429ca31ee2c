package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/pqedge/pqedge/internal/plan"
)

// socketSet is the server's listening sockets, keyed by the listener's
// socket key (plan.Listener.SocketKey, or an HTTP-01 listener's address).
// It outlives generations: a transaction binds each socket key of its plan
// to a socket (open): the one the set holds under that key, else one the
// set holds bound to exactly the address the key names (adoptable: the
// kernel's port of a port-0 listener, now written in the config), else a
// new one; on commit the set starts the new ones and closes those no key
// names any more (commit). A socket whose address stays is never closed by
// a reload, so no connection is refused; its accept loop hands each
// connection to the listener that the current generation serves on it
// (generation.bySocket).
//
// Transactions are serialised by Server.txnMu; mu guards the map against
// the readers (ListenerAddr, Shutdown).
//
// The UDP socket of an https listener with HTTP/3 is in the set under the
// listener's QUICKey (quic.go). Its connections live in its QUIC
// transport, not in the kernel: when the set drops it (or Shutdown closes
// everything) it only stops accepting and lingers until no live generation
// serves its address any more, so drains end their connections with a
// GOAWAY instead of cutting them (closeUnused).
type socketSet struct {
	srv *Server

	mu    sync.Mutex // guards byKey, lingering and closed
	byKey map[string]*socket
	// lingering are the UDP sockets that stopped accepting and wait for
	// their connections' generations to drain.
	lingering []*socket
	// closed is set by closeAll: nothing opens after it.
	closed bool
}

// socket is one listening socket: TCP (ln) or, for HTTP/3, UDP (quic).
// Generations find their listener by the socket itself (bySocket), not by
// key: a reload may name it under another key (adoptable).
type socket struct {
	key  string // the socket key it was opened under, for logs; the bind address is what precedes "#"
	ln   net.Listener
	quic *quicSocket // instead of ln on a QUICKey
	srv  *Server
	done chan struct{} // closed when the accept loop has returned
	once sync.Once     // start runs the accept loop once
	// plain serves an ACME HTTP-01 listener (acme.go) instead of TLS.
	plain *http.Server
	// reusePort: opened with SO_REUSEPORT.
	reusePort bool
	// stopped is closed with ln (closeTCP): it ends an accept loop's
	// wait for handshake room (waitForRoom).
	stopped  chan struct{}
	stopOnce sync.Once
}

// closeTCP closes the TCP listener and ends a wait for room.
func (sk *socket) closeTCP() {
	sk.stopOnce.Do(func() { close(sk.stopped) })
	sk.ln.Close()
}

func newSocketSet(s *Server) *socketSet {
	return &socketSet{srv: s, byKey: map[string]*socket{}}
}

// start runs the accept loop in its own goroutine, once: the sockets of a
// config with ACME sites start before it is committed, so that the CA's
// validation reaches them.
func (sk *socket) start() {
	sk.once.Do(func() {
		if sk.quic != nil {
			go sk.serveQUIC()
			return
		}
		go sk.acceptLoop()
	})
}

// addr is the socket's bound address.
func (sk *socket) addr() net.Addr {
	if sk.quic != nil {
		return sk.quic.udp.LocalAddr()
	}
	return sk.ln.Addr()
}

// socketWant is a socket a plan needs.
type socketWant struct {
	key   string // socket key
	what  string // for errors: `listener "https"`, `the HTTP-01 challenges of site "www" (acme.http_port)`
	plain bool   // an HTTP-01 listener, not TLS
	// freeBind binds an address the host may not have yet: an anycast
	// service address (anycast.FreeBind).
	freeBind bool
	// reusePort shares the address with other processes (listener
	// reuse_port; sockopt.go).
	reusePort bool
}

// socketBinding is where a transaction's plan listens: a socket for each
// of its socket keys.
type socketBinding struct {
	byKey  map[string]*socket // every wanted key: kept, adopted or opened
	opened []*socket          // bound by this transaction, not in the set yet
	// adopted are the wanted keys whose socket the set holds under
	// another key (for the commit's log).
	adopted []string
}

// socket returns the socket bound to a wanted key, or nil.
func (b *socketBinding) socket(key string) *socket {
	if b == nil {
		return nil
	}
	return b.byKey[key]
}

// port returns the bound port of a wanted key's socket, TCP or UDP; 0 if
// the key is not wanted.
func (b *socketBinding) port(key string) int {
	sk := b.socket(key)
	if sk == nil {
		return 0
	}
	switch a := sk.addr().(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	return 0
}

// open binds each wanted socket key to a socket: the set's under that key,
// else the set's that adoptable finds, else a new one, not accepting yet.
// On error it closes the ones it opened. Called from a transaction's
// prepare, without the server lock.
func (ss *socketSet) open(ctx context.Context, want []socketWant) (*socketBinding, error) {
	ss.mu.Lock()
	closed := ss.closed
	have := maps.Clone(ss.byKey)
	ss.mu.Unlock()
	if closed {
		return nil, errStopping
	}
	b := &socketBinding{byKey: map[string]*socket{}}
	// A socket whose key the plan names again is that key's, whatever
	// else could match its address.
	claimed := map[*socket]bool{}
	for _, w := range want {
		if sk, ok := have[w.key]; ok {
			b.byKey[w.key] = sk
			claimed[sk] = true
		}
	}
	fail := func(err error) (*socketBinding, error) {
		for _, sk := range b.opened {
			sk.close()
		}
		return nil, err
	}
	wants := map[string]socketWant{}
	for _, w := range want {
		wants[w.key] = w
		if sk := b.byKey[w.key]; sk != nil {
			ss.warnKeptReusePort(w, sk)
			continue
		}
		if sk := adoptable(have, claimed, w); sk != nil {
			ss.warnKeptReusePort(w, sk)
			b.byKey[w.key] = sk
			b.adopted = append(b.adopted, w.key)
			claimed[sk] = true
			continue
		}
		var sk *socket
		var err error
		if strings.HasPrefix(w.key, plan.QUICKeyPrefix) {
			sk, err = ss.openUDP(ctx, w, wants, b)
		} else {
			sk, err = ss.openTCP(ctx, w)
		}
		if err != nil {
			return fail(err)
		}
		b.opened = append(b.opened, sk)
		b.byKey[w.key] = sk
	}
	return b, nil
}

// adoptable returns the socket of have, not claimed by another key, that a
// wanted key no socket is held under can take over: of the same kind (TCP
// or UDP; TLS or HTTP-01) and bound to exactly the address w names
// (bindsTo). So a listener configured with port 0 whose config then names
// the port the kernel chose ("127.0.0.1:0" became "127.0.0.1:40091"), or
// an address written another way ("0.0.0.0:443" became "[::]:443"), keeps
// its socket and its connections instead of failing to bind a port its
// own socket holds (EADDRINUSE), and a reload that swaps two such
// listeners' ports swaps their sockets. A wanted port 0 matches nothing:
// it asks for a new port.
func adoptable(have map[string]*socket, claimed map[*socket]bool, w socketWant) *socket {
	udp := strings.HasPrefix(w.key, plan.QUICKeyPrefix)
	// In key order, so that the choice does not depend on map order
	// (two reuse_port sockets may share an address).
	for _, key := range slices.Sorted(maps.Keys(have)) {
		sk := have[key]
		if claimed[sk] || (sk.quic != nil) != udp || (sk.plain != nil) != w.plain {
			continue
		}
		if bindsTo(plan.BindAddress(w.key), sk.addr()) {
			return sk
		}
	}
	return nil
}

// bindsTo reports whether listening on address ("host:port" as configured)
// would bind exactly bound, a socket's bound address. The host must be an
// IP address (a name is resolved only when bound, so it never matches) or
// empty. Go binds an empty host, 0.0.0.0 and :: alike, as one dual-stack
// socket reported as [::] (net's favoriteAddrFamily for "tcp" and "udp"),
// and an IPv4-mapped address as IPv4: the comparison does the same.
func bindsTo(address string, bound net.Addr) bool {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return false
	}
	var b netip.AddrPort
	switch a := bound.(type) {
	case *net.TCPAddr:
		b = a.AddrPort()
	case *net.UDPAddr:
		b = a.AddrPort()
	default:
		return false
	}
	if b.Port() != uint16(p) {
		return false
	}
	want := netip.IPv6Unspecified()
	if host != "" {
		if want, err = netip.ParseAddr(host); err != nil {
			return false
		}
	}
	want, have := want.Unmap(), b.Addr().Unmap()
	if want.IsUnspecified() {
		return have.IsUnspecified()
	}
	return want == have
}

// openTCP binds one wanted TCP socket.
func (ss *socketSet) openTCP(ctx context.Context, w socketWant) (*socket, error) {
	lc := net.ListenConfig{Control: w.control(), KeepAlive: acceptKeepAlive}
	addr := plan.BindAddress(w.key)
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s for %s: %w", addr, w.what, err)
	}
	sk := &socket{key: w.key, ln: ln, srv: ss.srv, done: make(chan struct{}), reusePort: w.reusePort, stopped: make(chan struct{})}
	if w.plain {
		sk.plain = &http.Server{
			Handler:           ss.srv.plainHandler(sk),
			ReadHeaderTimeout: plainReadHeader,
			IdleTimeout:       plainIdle,
			ErrorLog:          slog.NewLogLogger(ss.srv.log.Handler(), slog.LevelDebug),
		}
	}
	return sk, nil
}

// openUDP binds the UDP socket of an HTTP/3 listener on the port of its
// TCP socket, bound before it. A TCP socket on "any free port" that this
// transaction opened is moved when the UDP port of the same number is
// taken, a few times: the kernel picks free TCP ports, not pairs.
func (ss *socketSet) openUDP(ctx context.Context, w socketWant, wants map[string]socketWant, b *socketBinding) (*socket, error) {
	tcpKey := strings.TrimPrefix(w.key, plan.QUICKeyPrefix)
	for try := 0; ; try++ {
		sk, err := ss.openQUIC(ctx, w, b.port(tcpKey))
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || try == 8 {
			return sk, err
		}
		i := slices.Index(b.opened, b.socket(tcpKey))
		_, confPort, _ := net.SplitHostPort(plan.BindAddress(tcpKey))
		if i < 0 || confPort != "0" {
			return nil, err
		}
		tcp, terr := ss.openTCP(ctx, wants[tcpKey])
		if terr != nil {
			return nil, terr
		}
		b.opened[i].close()
		b.opened[i] = tcp
		b.byKey[tcpKey] = tcp
	}
}

// commit makes b the set's sockets: it registers each key's socket,
// starts the opened ones, and stops accepting on those no key names any
// more. Connections those sockets accepted finish in the generation that
// took them. Called under the server lock.
func (ss *socketSet) commit(b *socketBinding) {
	ss.mu.Lock()
	old := ss.byKey
	ss.byKey = maps.Clone(b.byKey)
	kept := map[*socket]bool{}
	for _, sk := range b.byKey {
		kept[sk] = true
	}
	var drop []*socket
	for _, sk := range old {
		if !kept[sk] {
			kept[sk] = true // once, even if it was under two keys
			drop = append(drop, sk)
		}
	}
	ss.mu.Unlock()
	for _, sk := range b.opened {
		sk.start()
	}
	ss.stopAccepting(drop)
}

// abort closes sockets a transaction opened and will not commit, and waits
// for the accept loops it started.
func (ss *socketSet) abort(b *socketBinding) {
	if b == nil {
		return
	}
	opened := b.opened
	for _, sk := range opened {
		sk.close()
	}
	for _, sk := range opened {
		if started(sk) {
			<-sk.done
		}
	}
}

// started reports whether sk's accept loop was started (it then closes
// done when it returns).
func started(sk *socket) bool {
	ran := true
	sk.once.Do(func() { ran = false; close(sk.done) })
	return ran
}

// closeAll stops accepting on every socket and waits for the accept loops.
// Nothing opens after it.
func (ss *socketSet) closeAll() {
	ss.mu.Lock()
	ss.closed = true
	socks := make([]*socket, 0, len(ss.byKey))
	for _, sk := range ss.byKey {
		socks = append(socks, sk)
	}
	ss.byKey = map[string]*socket{}
	ss.mu.Unlock()
	ss.stopAccepting(socks)
	for _, sk := range socks {
		if started(sk) {
			<-sk.done
		}
	}
}

// addr returns the bound address of a socket key, or nil.
func (ss *socketSet) addr(key string) net.Addr {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if sk, ok := ss.byKey[key]; ok {
		return sk.addr()
	}
	return nil
}

// close closes a socket that served nothing yet, or whose connections are
// gone: a TCP listener, or a UDP socket with its QUIC transport.
func (sk *socket) close() {
	if sk.quic != nil {
		sk.quic.close()
		return
	}
	sk.closeTCP()
}

// stopAccepting closes sockets the set no longer holds. Connections TCP
// sockets accepted live on in their generations; UDP sockets stop
// accepting and linger for theirs (closeUnused).
func (ss *socketSet) stopAccepting(socks []*socket) {
	for _, sk := range socks {
		if sk.quic == nil {
			sk.closeTCP()
			continue
		}
		sk.quic.ln.Close()
		ss.mu.Lock()
		ss.lingering = append(ss.lingering, sk)
		ss.mu.Unlock()
	}
}

// closeUnused closes the lingering UDP sockets that no generation in live
// serves any more; called when a generation has drained.
func (ss *socketSet) closeUnused(live []*generation) {
	inUse := func(sk *socket) bool {
		for _, g := range live {
			if l := g.bySocket[sk]; l != nil && l.quic != nil {
				return true
			}
		}
		return false
	}
	ss.mu.Lock()
	var unused []*socket
	ss.lingering = slices.DeleteFunc(ss.lingering, func(sk *socket) bool {
		if inUse(sk) {
			return false
		}
		unused = append(unused, sk)
		return true
	})
	ss.mu.Unlock()
	for _, sk := range unused {
		sk.quic.close()
	}
}
