package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pqedge/pqedge/internal/anycast"
	"github.com/pqedge/pqedge/internal/config"
)

// AnycastDevice is what the server needs of the device it announces on:
// adding and removing a prefix's announcement copy, putting the service
// address on lo, and closing, which withdraws everything. *anycast.Device
// is the real one.
type AnycastDevice interface {
	anycast.Announcer
	// EnsureLoopback adds p's address to lo unless it is there, and
	// reports whether it added it; it never removes one.
	EnsureLoopback(p netip.Prefix) (added bool, err error)
	Close() error
}

var _ AnycastDevice = (*anycast.Device)(nil)

// anycastNode is the server's anycast component: the device and the
// Controller that runs each prefix's flap control on it. The first config
// with an [anycast] block makes it; it outlives generations, each of which
// configures its prefixes on commit, and is closed by Shutdown after the
// drain. Its device cannot change while the server runs: BIRD watches it by
// name, and a second device would announce from two places at once.
//
// The server reports each prefix's health to the Controller (reportAnycast)
// when it becomes ready, after every commit, on every upstream health
// change and on every certificate check; the Controller decides when to
// announce or withdraw.
type anycastNode struct {
	device string
	dev    AnycastDevice
	ctl    *anycast.Controller
	log    *slog.Logger

	// reportMu serialises Configure and health reports, so a report
	// computed from an older state never lands after a newer one and only
	// names prefixes the Controller was configured with. It is taken
	// before the Controller's lock, never inside its callback.
	reportMu sync.Mutex
	gen      *generation // the generation the prefixes come from; guarded by reportMu

	recentMu sync.Mutex           // guards recent
	recent   []anycast.Transition // the last maxRecentTransitions, oldest first
}

// maxRecentTransitions is how many transitions /anycast shows: enough to
// see a flap or a shutdown, bounded whatever the uptime.
const maxRecentTransitions = 32

// prepareAnycast is the transaction step for an [anycast] block: the first
// config that has one opens the device; every config makes sure its
// service addresses are on lo. A config that names another device than
// the running one is refused. Prefixes are configured on commit.
func (t *txn) prepareAnycast() error {
	a := t.cfg.Anycast
	if a == nil {
		return nil
	}
	n := t.s.anycast.Load()
	if n != nil && n.device != a.Device {
		return config.Problems{t.cfg.Problem("anycast.device",
			fmt.Sprintf("keep %q, or restart pqedge (and point BIRD's direct protocol at the new name)", n.device),
			"cannot change the anycast device from %q to %q while running: it is created once, at start", n.device, a.Device)}
	}
	anns := a.Announcements()
	for _, an := range anns {
		if err := anycast.CheckPrefix(an.Prefix); err != nil {
			return fmt.Errorf("failed to apply %s: %w", t.cfg.File, err)
		}
		if err := an.Policy.Check(); err != nil {
			return fmt.Errorf("failed to apply %s: prefix %s: %w", t.cfg.File, an.Prefix, err)
		}
	}
	if n == nil {
		var err error
		if n, err = t.s.openAnycast(a.Device); err != nil {
			return fmt.Errorf("failed to apply %s: %w", t.cfg.File, err)
		}
		t.anycast = n
	}
	for _, an := range anns {
		added, err := n.dev.EnsureLoopback(an.Prefix)
		if err != nil {
			return fmt.Errorf("failed to apply %s: anycast prefix %s: %w", t.cfg.File, an.Prefix, err)
		}
		if added {
			t.s.log.Info("added the anycast service address to lo", "prefix", an.Prefix.String())
		}
	}
	return nil
}

// openAnycast opens the device and starts a Controller on it.
func (s *Server) openAnycast(device string) (*anycastNode, error) {
	open := s.opts.OpenAnycastDevice
	if open == nil {
		open = func(name string) (AnycastDevice, error) { return anycast.OpenDevice(name) }
	}
	dev, err := open(device)
	if err != nil {
		return nil, err
	}
	n := &anycastNode{device: device, dev: dev, log: s.log}
	n.ctl = anycast.NewController(dev, anycast.Options{OnTransition: func(tr anycast.Transition) {
		n.transitioned(tr, s.anycastTransitions)
	}})
	s.log.Info("anycast device created", "device", device)
	return n, nil
}

// transitioned is the Controller's OnTransition: a count, a log line and
// the /anycast history. It runs under the Controller's lock: it must not
// call the Controller.
func (n *anycastNode) transitioned(tr anycast.Transition, counter *prometheus.CounterVec) {
	action, result := transitionAction(tr), "ok"
	if tr.Err != nil {
		result = "error"
	}
	counter.WithLabelValues(tr.Prefix.String(), action, string(tr.Cause), result).Inc()
	attrs := []any{"prefix", tr.Prefix.String(), "device", n.device, "cause", string(tr.Cause), "reason", tr.Reason}
	switch {
	case tr.Err != nil:
		n.log.Error("failed to "+action+" anycast prefix", append(attrs, "err", tr.Err)...)
	case tr.Announced:
		n.log.Info("anycast prefix announced", attrs...)
	default:
		n.log.Warn("anycast prefix withdrawn", attrs...)
	}
	n.recentMu.Lock()
	defer n.recentMu.Unlock()
	if len(n.recent) == maxRecentTransitions {
		n.recent = append(n.recent[:0], n.recent[1:]...)
	}
	n.recent = append(n.recent, tr)
}

func transitionAction(tr anycast.Transition) string {
	if tr.Announced {
		return "announce"
	}
	return "withdraw"
}

// recentTransitions returns a copy of the history.
func (n *anycastNode) recentTransitions() []anycast.Transition {
	n.recentMu.Lock()
	defer n.recentMu.Unlock()
	return append([]anycast.Transition(nil), n.recent...)
}

// commitAnycast publishes a new component, configures the committed
// generation's prefixes (a config without [anycast] withdraws them all)
// and reports their health. Called after the commit's swap, without the
// server lock: withdrawing removed prefixes is netlink I/O. A Shutdown that
// began since is not ready, so nothing gets announced, and it closes the
// component once this transaction is over.
func (t *txn) commitAnycast() {
	s := t.s
	if t.anycast != nil {
		s.anycast.Store(t.anycast)
		t.anycast = nil
	}
	n := s.anycast.Load()
	if n == nil {
		return
	}
	var anns []anycast.Announcement
	if a := t.cfg.Anycast; a != nil {
		anns = a.Announcements()
	}
	n.reportMu.Lock()
	// The prefixes were checked in prepare, so Configure takes them; what
	// may fail is withdrawing a removed one, whose copy then stays on the
	// device until it closes.
	if err := n.ctl.Configure(anns); err != nil {
		s.log.Error("anycast: failed to withdraw a prefix removed from the config", "err", err)
	}
	n.gen = t.gen
	n.reportMu.Unlock()
	s.reportAnycast()
}

// reportAnycast reports every prefix's health to the Controller.
func (s *Server) reportAnycast() {
	n := s.anycast.Load()
	if n == nil {
		return
	}
	n.reportMu.Lock()
	defer n.reportMu.Unlock()
	g := n.gen
	if g == nil || g.plan.Config.Anycast == nil {
		return
	}
	for _, ap := range g.plan.Config.Anycast.Prefix {
		p := netip.MustParsePrefix(ap.Prefix) // validated by config
		healthy, reason := s.prefixHealth(g, ap.Listeners)
		if err := n.ctl.Update(p, healthy, reason); err != nil && !errors.Is(err, anycast.ErrClosed) {
			s.log.Error("anycast: failed to report health", "prefix", ap.Prefix, "err", err)
		}
	}
}

// prefixHealth says whether a prefix served by listeners can be announced,
// and why: the server is ready (started, not shutting down), and each
// listener is bound, has valid certificates for its sites and, for every
// pool its routes or stream use, a healthy upstream.
func (s *Server) prefixHealth(g *generation, listeners []string) (bool, string) {
	if !s.ready.Load() {
		return false, s.notReadyReason()
	}
	now := s.now()
	for _, name := range listeners {
		pl := g.plan.Listener(name)
		if pl == nil {
			return false, fmt.Sprintf("listener %q is not in the running config", name)
		}
		l := g.listeners[pl.SocketKey]
		if ok, detail := s.listenerBound(pl.SocketKey); !ok {
			return false, fmt.Sprintf("listener %q %s", name, detail)
		}
		for _, ps := range pl.Resolver.Sites() {
			if ok, detail := l.site(ps).certStatus(now); !ok {
				return false, fmt.Sprintf("listener %q: site %q: %s", name, ps.Name, detail)
			}
		}
		for _, pool := range listenerPools(l) {
			if ok, detail := poolStatus(g, pool); !ok {
				return false, fmt.Sprintf("listener %q: pool %q %s", name, pool, detail)
			}
		}
	}
	return true, fmt.Sprintf("serving on %s", quoteList(listeners))
}

// listenerPools lists the pools a listener's connections may reach: its
// stream's pool, or those of its sites' routes, without repeats.
func listenerPools(l *listenerRuntime) []string {
	if l.Pool != "" {
		return []string{l.Pool}
	}
	var pools []string
	seen := map[string]bool{}
	for _, ps := range l.Resolver.Sites() {
		for _, r := range l.site(ps).Routes {
			if r.Pool != "" && !seen[r.Pool] {
				seen[r.Pool] = true
				pools = append(pools, r.Pool)
			}
		}
	}
	return pools
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// isAnycastAddress reports whether a listener address binds one of cfg's
// anycast service addresses, which may not be on any interface yet when
// the socket is opened.
func isAnycastAddress(cfg *config.Config, address string) bool {
	if cfg.Anycast == nil {
		return false
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	for _, p := range cfg.Anycast.Prefix {
		if pfx, err := netip.ParsePrefix(p.Prefix); err == nil && pfx.Addr() == a.Unmap() {
			return true
		}
	}
	return false
}

// withdrawAll withdraws every prefix for good: the first step of Shutdown.
func (s *Server) withdrawAll() {
	n := s.anycast.Load()
	if n == nil {
		return
	}
	if err := n.ctl.WithdrawAll("pqedge is shutting down"); err != nil && !errors.Is(err, anycast.ErrClosed) {
		// Closing the device after the drain withdraws what is left.
		s.log.Error("anycast: failed to withdraw on shutdown", "err", err)
	}
	s.reportAnycast() // so /anycast says why: shutting down
}

// closeAnycast stops the Controller and deletes the device, which
// withdraws whatever is still announced.
func (s *Server) closeAnycast() {
	if n := s.anycast.Load(); n != nil {
		n.close()
	}
}

func (n *anycastNode) close() {
	n.ctl.Close()
	if err := n.dev.Close(); err != nil {
		n.log.Error("anycast: failed to close the device", "device", n.device, "err", err)
	}
}
