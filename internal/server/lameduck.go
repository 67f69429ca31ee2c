package server

import (
	"context"
	"fmt"
	"time"
)

// The lame-duck shutdown. A node that is going away first stops attracting
// new clients, then stops accepting, then drains:
//
//	withdraw  /readyz answers 503 and every anycast prefix is withdrawn,
//	          at once
//	grace     for timeouts.withdraw_grace pqedge keeps accepting and
//	          serving, while routers converge (and load balancers notice
//	          /readyz), so the last clients routed here are still served
//	close     the listening sockets close
//	drain     in-flight requests, streams and upgraded connections finish
//	          until timeouts.shutdown, counted from the start
//	close     the components stop; the anycast device goes, withdrawing
//	          whatever a failed withdrawal left
//
// timeouts.shutdown is the whole budget from SIGTERM to exit, the grace
// included (config refuses a grace that leaves no time to drain), so a
// service manager's stop timeout only has to exceed timeouts.shutdown.

// lameDuck is a Shutdown in progress, for /readyz.
type lameDuck struct {
	began      time.Time
	graceUntil time.Time // == began without a grace
	deadline   time.Time // timeouts.shutdown after began
}

// beginLameDuck records the start of Shutdown. Called under s.mu, in the
// same critical section that turns ready off, so /readyz never answers 200
// without saying why not.
func (s *Server) beginLameDuck() *lameDuck {
	now := time.Now()
	ld := &lameDuck{began: now, graceUntil: now, deadline: now}
	if g := s.current.Load(); g != nil {
		ld.graceUntil = now.Add(g.plan.Timeouts.WithdrawGrace)
		ld.deadline = now.Add(g.plan.Timeouts.Shutdown)
	}
	s.lameDuck.Store(ld)
	return ld
}

// describe says where the shutdown is, for the readiness check.
func (ld *lameDuck) describe(now time.Time) string {
	since := ld.began.UTC().Format(time.RFC3339)
	if now.Before(ld.graceUntil) {
		return fmt.Sprintf("shutting down since %s; still accepting for %v (timeouts.withdraw_grace), then draining",
			since, ld.graceUntil.Sub(now).Round(time.Millisecond))
	}
	return fmt.Sprintf("shutting down since %s; not accepting, draining until %s at the latest (timeouts.shutdown)",
		since, ld.deadline.UTC().Format(time.RFC3339))
}

// withdrawAndWait is the first part of Shutdown: withdraw every prefix,
// then keep serving until the grace ends, ctx ends or EndGrace is called.
func (s *Server) withdrawAndWait(ctx context.Context, ld *lameDuck) {
	s.withdrawAll()
	grace := time.Until(ld.graceUntil)
	if grace <= 0 {
		return
	}
	s.log.Info("not ready; accepting during the withdraw grace", "withdraw_grace", grace.Round(time.Millisecond).String())
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.endGrace:
		s.log.Info("withdraw grace cut short")
	}
	// The grace may have ended early: /readyz must then say the listeners
	// are closing, not that they still accept.
	ld2 := *ld
	if now := time.Now(); now.Before(ld2.graceUntil) {
		ld2.graceUntil = now
	}
	s.lameDuck.Store(&ld2)
}

// EndGrace ends the withdraw grace of a Shutdown in progress, or of the
// next one: pqedge stops accepting at once and drains. pqedge run calls it
// when a second SIGTERM or SIGINT arrives.
func (s *Server) EndGrace() {
	s.graceOnce.Do(func() { close(s.endGrace) })
}
