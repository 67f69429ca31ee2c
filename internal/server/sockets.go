package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/pqedge/pqedge/internal/plan"
)

// socketSet is the server's listening sockets, keyed by the listener's
// socket key (plan.Listener.SocketKey, or an HTTP-01 listener's address).
// It outlives generations: a transaction opens the sockets its plan needs
// and that are not open yet (open), and on commit the set starts them and
// closes the ones the plan no longer names (commit). A socket whose address
// stays is never closed by a reload, so no connection is refused; its
// accept loop hands each connection to whatever generation is current.
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
type socket struct {
	key  string // socket key; the bind address is what precedes "#"
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

// open binds the wanted sockets that are not bound yet and returns them,
// not accepting yet; on error it closes the ones it opened. Called from a
// transaction's prepare, without the server lock.
func (ss *socketSet) open(ctx context.Context, want []socketWant) ([]*socket, error) {
	ss.mu.Lock()
	closed := ss.closed
	have := map[string]bool{}
	for k := range ss.byKey {
		have[k] = true
	}
	ss.mu.Unlock()
	if closed {
		return nil, errStopping
	}
	var opened []*socket
	fail := func(err error) ([]*socket, error) {
		for _, sk := range opened {
			sk.close()
		}
		return nil, err
	}
	wants := map[string]socketWant{}
	for _, w := range want {
		wants[w.key] = w
		if have[w.key] {
			continue
		}
		var sk *socket
		var err error
		if strings.HasPrefix(w.key, plan.QUICKeyPrefix) {
			sk, err = ss.openUDP(ctx, w, wants, opened)
		} else {
			sk, err = ss.openTCP(ctx, w)
		}
		if err != nil {
			return fail(err)
		}
		opened = append(opened, sk)
		have[w.key] = true
	}
	return opened, nil
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
			Handler:           ss.srv.plainHandler(w.key),
			ReadHeaderTimeout: plainReadHeader,
			IdleTimeout:       plainIdle,
			ErrorLog:          slog.NewLogLogger(ss.srv.log.Handler(), slog.LevelDebug),
		}
	}
	return sk, nil
}

// openUDP binds the UDP socket of an HTTP/3 listener on the port of its
// TCP socket, wanted before it. A TCP socket on "any free port" that this
// transaction opened is moved when the UDP port of the same number is
// taken, a few times: the kernel picks free TCP ports, not pairs.
func (ss *socketSet) openUDP(ctx context.Context, w socketWant, wants map[string]socketWant, opened []*socket) (*socket, error) {
	tcpKey := strings.TrimPrefix(w.key, plan.QUICKeyPrefix)
	for try := 0; ; try++ {
		port := ss.port(tcpKey, opened)
		sk, err := ss.openQUIC(ctx, w, port)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || try == 8 {
			return sk, err
		}
		i := slices.IndexFunc(opened, func(sk *socket) bool { return sk.key == tcpKey })
		_, confPort, _ := net.SplitHostPort(plan.BindAddress(tcpKey))
		if i < 0 || confPort != "0" {
			return nil, err
		}
		tcp, terr := ss.openTCP(ctx, wants[tcpKey])
		if terr != nil {
			return nil, terr
		}
		opened[i].close()
		opened[i] = tcp
	}
}

// commit registers opened, starts them, and closes the sockets whose keys
// are not in keep. Connections those sockets accepted finish in the
// generation that took them. Called under the server lock.
func (ss *socketSet) commit(opened []*socket, keep []string) {
	ss.mu.Lock()
	for _, sk := range opened {
		ss.byKey[sk.key] = sk
	}
	var drop []*socket
	for key, sk := range ss.byKey {
		if !slices.Contains(keep, key) {
			drop = append(drop, sk)
			delete(ss.byKey, key)
		}
	}
	ss.mu.Unlock()
	for _, sk := range opened {
		sk.start()
	}
	ss.stopAccepting(drop)
}

// abort closes sockets a transaction opened and will not commit, and waits
// for the accept loops it started.
func (ss *socketSet) abort(opened []*socket) {
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

// port returns the bound port of a socket key, TCP or UDP, looking at
// opened first (a transaction's new sockets are not in the set before
// commit); 0 if unknown.
func (ss *socketSet) port(key string, opened []*socket) int {
	var a net.Addr
	for _, sk := range opened {
		if sk.key == key {
			a = sk.addr()
		}
	}
	if a == nil {
		a = ss.addr(key)
	}
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	return 0
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
			for _, l := range g.listeners {
				if l.quic != nil && l.QUICKey == sk.key {
					return true
				}
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
