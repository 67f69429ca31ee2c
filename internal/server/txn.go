package server

import (
	"context"
	"fmt"

	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/plan"
)

// txn is one configuration transaction: New's first config and every
// Reload. prepare builds the new generation beside the running one; commit
// swaps it in; abort undoes what prepare did. The fields are filled by the
// steps of prepare, in order.
type txn struct {
	s   *Server
	ctx context.Context // canceled by Shutdown
	cfg *config.Config

	plan  *plan.Plan
	certs *certBatch
	// bound is the socket of each socket key of the plan; the ones it
	// opened are not in the set yet.
	bound *socketBinding
	acme  *acmeGen
	gen   *generation
	admin *adminListener // a new admin listener when the address changed
	// adminMoved is set when the admin address changes (admin may then be
	// nil: the new config has none).
	adminMoved bool
	// anycast is the anycast component when this config is the first with
	// an [anycast] block (anycast.go); nil otherwise.
	anycast *anycastNode
}

// apply runs one transaction for cfg. Transactions are serialised; Shutdown
// cancels the one in progress.
func (s *Server) apply(ctx context.Context, cfg *config.Config) error {
	s.txnMu.Lock()
	defer s.txnMu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return fmt.Errorf("failed to apply %s: %w", cfg.File, errStopping)
	}
	s.txnCancel = func() { cancel(errStopping) }
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.txnCancel = nil
		s.mu.Unlock()
	}()

	t := &txn{s: s, ctx: ctx, cfg: cfg}
	if err := t.prepare(); err != nil {
		t.abort()
		return err
	}
	if err := t.commit(); err != nil {
		t.abort()
		return err
	}
	return nil
}

// prepare builds everything the new config needs, beside the running
// generation and without the server lock. Each step may fail; the
// transaction is then aborted and the running config keeps serving.
func (t *txn) prepare() error {
	steps := []struct {
		name string
		run  func() error
	}{
		{"planning", t.buildPlan},                    // config → immutable plan, no I/O
		{"checking the fleet", t.checkFleet},         // [fleet] as the node started with it (fleet.go)
		{"loading certificates", t.loadCertificates}, // each site's chains: kept, reloaded or issued
		{"opening sockets", t.openSockets},           // bind the addresses not bound yet
		{"preparing anycast", t.prepareAnycast},      // the announcement device; service addresses on lo
		{"preparing ACME", t.prepareManagers},        // make or reuse the Managers of ACME sites
		{"building", t.buildGeneration},              // TLS configs, pools, proxies, HTTP servers
		{"opening the admin listener", t.openAdmin},
		{"obtaining ACME certificates", t.obtain}, // network I/O: the CA validates through the new sockets
	}
	for _, step := range steps {
		if t.ctx.Err() != nil {
			return fmt.Errorf("failed to apply %s: canceled before %s: %w", t.cfg.File, step.name, context.Cause(t.ctx))
		}
		if err := step.run(); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) buildPlan() (err error) {
	t.plan, err = plan.Build(t.cfg)
	return err
}

func (t *txn) loadCertificates() (err error) {
	t.certs, err = t.s.certs.prepare(t.plan, t.s.now())
	return err
}

func (t *txn) openSockets() (err error) {
	var want []socketWant
	for _, l := range t.plan.Listeners {
		w := socketWant{key: l.SocketKey, what: fmt.Sprintf("listener %q", l.Name), freeBind: isAnycastAddress(t.cfg, l.Address), reusePort: l.ReusePort}
		want = append(want, w)
		if l.QUICKey != "" {
			w.key = l.QUICKey // HTTP/3: UDP on the same address, after the TCP socket (sockets.go)
			want = append(want, w)
		}
	}
	for _, a := range t.plan.ACME {
		if a.Plain != "" {
			want = append(want, socketWant{key: a.Plain, what: fmt.Sprintf("the HTTP-01 challenges of site %q (acme.http_port)", a.Site.Name), plain: true})
		}
	}
	t.bound, err = t.s.sockets.open(t.ctx, want)
	return err
}

// commit makes the prepared generation current. It holds the server lock
// only for the swap: nothing in it waits on the network.
func (t *txn) commit() error {
	s := t.s
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return fmt.Errorf("failed to apply %s: %w", t.cfg.File, errStopping)
	}
	old := s.current.Load()
	t.gen.start()
	s.current.Store(t.gen)
	s.live = append([]*generation{t.gen}, s.live...)
	s.sockets.commit(t.bound)
	bound := t.bound
	t.bound = nil // the set owns them now
	s.acme.commit(t.acme)
	t.acme = nil
	s.certs.commit(t.certs, s.now())
	s.limiter.SetOptions(limiterOptions(t.plan.Limits, t.plan.Timeouts))
	if s.opts.HeapFloor != nil {
		s.opts.HeapFloor.Set(uint64(t.plan.Limits.HeapFloor))
	}
	var oldAdmin *adminListener
	if t.adminMoved {
		oldAdmin, s.admin = s.admin, t.admin
		t.admin = nil
	}
	s.mu.Unlock()

	if oldAdmin != nil {
		go oldAdmin.shutdownSoon()
	}
	if old != nil {
		s.retire(old, context.Background())
	}
	s.syncUpstreamMetrics()
	t.commitAnycast()
	s.refreshACMEExpiry(t.gen)
	for _, sk := range bound.opened {
		s.log.Info("listening", "address", sk.addr().String(), "network", sk.addr().Network(), "configured", plan.BindAddress(sk.key))
	}
	for _, key := range bound.adopted {
		sk := bound.byKey[key]
		s.log.Info("listening on the socket kept from the previous config", "address", sk.addr().String(), "network", sk.addr().Network(),
			"configured", plan.BindAddress(key))
	}
	return nil
}

// abort closes what prepare opened. The running generation never saw any
// of it.
func (t *txn) abort() {
	if t.gen != nil {
		t.gen.closePools()
	}
	t.s.sockets.abort(t.bound)
	t.s.acme.abandon(t.acme)
	if t.admin != nil {
		t.admin.close()
	}
	if t.anycast != nil {
		t.anycast.close()
	}
}
