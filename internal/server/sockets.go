package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"

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
// the readers (ListenerAddr, Shutdown). A UDP socket (HTTP/3) is meant to
// join the set under the same key scheme with a net.PacketConn beside ln.
type socketSet struct {
	srv *Server

	mu    sync.Mutex // guards byKey and closed
	byKey map[string]*socket
	// closed is set by closeAll: nothing opens after it.
	closed bool
}

// socket is one listening socket.
type socket struct {
	key  string // socket key; the bind address is what precedes "#"
	ln   net.Listener
	srv  *Server
	done chan struct{} // closed when the accept loop has returned
	once sync.Once     // start runs the accept loop once
	// plain serves an ACME HTTP-01 listener (acme.go) instead of TLS.
	plain *http.Server
	// reusePort: opened with SO_REUSEPORT.
	reusePort bool
}

func newSocketSet(s *Server) *socketSet {
	return &socketSet{srv: s, byKey: map[string]*socket{}}
}

// start runs the accept loop in its own goroutine, once: the sockets of a
// config with ACME sites start before it is committed, so that the CA's
// validation reaches them.
func (sk *socket) start() {
	sk.once.Do(func() { go sk.acceptLoop() })
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
	for _, w := range want {
		if have[w.key] {
			continue
		}
		lc := net.ListenConfig{Control: w.control()}
		addr := plan.BindAddress(w.key)
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			closeSockets(opened)
			return nil, fmt.Errorf("failed to listen on %s for %s: %w", addr, w.what, err)
		}
		sk := &socket{key: w.key, ln: ln, srv: ss.srv, done: make(chan struct{}), reusePort: w.reusePort}
		if w.plain {
			sk.plain = &http.Server{
				Handler:           ss.srv.plainHandler(w.key),
				ReadHeaderTimeout: plainReadHeader,
				IdleTimeout:       plainIdle,
				ErrorLog:          slog.NewLogLogger(ss.srv.log.Handler(), slog.LevelDebug),
			}
		}
		opened = append(opened, sk)
		have[w.key] = true
	}
	return opened, nil
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
	closeSockets(drop)
}

// abort closes sockets a transaction opened and will not commit, and waits
// for the accept loops it started.
func (ss *socketSet) abort(opened []*socket) {
	closeSockets(opened)
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
	closeSockets(socks)
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
		return sk.ln.Addr()
	}
	return nil
}

// port returns the bound TCP port of a socket key, looking at opened first
// (a transaction's new sockets are not in the set before commit); 0 if
// unknown.
func (ss *socketSet) port(key string, opened []*socket) int {
	var a net.Addr
	for _, sk := range opened {
		if sk.key == key {
			a = sk.ln.Addr()
		}
	}
	if a == nil {
		a = ss.addr(key)
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}

func closeSockets(socks []*socket) {
	for _, sk := range socks {
		sk.ln.Close()
	}
}
