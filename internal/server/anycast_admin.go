package server

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// anycastReport is what /anycast shows: each configured prefix with its
// state, and the last transitions with their reasons.
type anycastReport struct {
	Device      string                    `json:"device"`
	Prefixes    []anycastPrefixReport     `json:"prefixes"`
	Transitions []anycastTransitionReport `json:"transitions"` // oldest first
}

type anycastPrefixReport struct {
	Prefix    string   `json:"prefix"`
	Listeners []string `json:"listeners"`
	Announced bool     `json:"announced"`
	// Healthy and Reason are the server's last health report.
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason"`
	// Since is the last announce or withdraw; absent before the first.
	Since *time.Time `json:"since,omitempty"`
	// HoldUntil is when a withdrawn prefix may be announced again.
	HoldUntil *time.Time `json:"hold_until,omitempty"`
	Error     string     `json:"error,omitempty"` // the device's last refusal
}

type anycastTransitionReport struct {
	Prefix string    `json:"prefix"`
	Action string    `json:"action"` // announce or withdraw
	Cause  string    `json:"cause"`  // healthy, unhealthy, shutdown, removed
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	Error  string    `json:"error,omitempty"` // the attempt failed
}

// report snapshots the component.
func (n *anycastNode) report() anycastReport {
	rep := anycastReport{Device: n.device, Prefixes: []anycastPrefixReport{}, Transitions: []anycastTransitionReport{}}
	listeners := map[string][]string{}
	n.reportMu.Lock()
	if g := n.gen; g != nil && g.plan.Config.Anycast != nil {
		for _, p := range g.plan.Config.Anycast.Prefix {
			listeners[p.Prefix] = p.Listeners
		}
	}
	n.reportMu.Unlock()
	for _, st := range n.ctl.State() {
		pr := anycastPrefixReport{Prefix: st.Prefix.String(), Listeners: listeners[st.Prefix.String()], Announced: st.Announced,
			Healthy: st.Healthy, Reason: st.Reason, Since: timeOrNil(st.Since), HoldUntil: timeOrNil(st.HoldUntil)}
		if st.LastError != nil {
			pr.Error = st.LastError.Error()
		}
		rep.Prefixes = append(rep.Prefixes, pr)
	}
	for _, tr := range n.recentTransitions() {
		tp := anycastTransitionReport{Prefix: tr.Prefix.String(), Action: transitionAction(tr), Cause: string(tr.Cause), Reason: tr.Reason, At: tr.At}
		if tr.Err != nil {
			tp.Error = tr.Err.Error()
		}
		rep.Transitions = append(rep.Transitions, tp)
	}
	return rep
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// serveAnycast shows the anycast state: text, or JSON for ?format=json or
// Accept: application/json. Without an [anycast] block it answers 404.
func (s *Server) serveAnycast(w http.ResponseWriter, r *http.Request) {
	n := s.anycast.Load()
	if n == nil {
		http.Error(w, "anycast is off: the config has no [anycast] block", http.StatusNotFound)
		return
	}
	rep := n.report()
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, rep)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "device %s\n", rep.Device)
	for _, p := range rep.Prefixes {
		state := "withdrawn"
		if p.Announced {
			state = "announced"
		}
		health := "unhealthy"
		if p.Healthy {
			health = "healthy"
		}
		fmt.Fprintf(&b, "%s %s", p.Prefix, state)
		if p.Since != nil {
			fmt.Fprintf(&b, " since %s", p.Since.UTC().Format(time.RFC3339))
		}
		if p.HoldUntil != nil {
			fmt.Fprintf(&b, ", held down until %s", p.HoldUntil.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, "; %s: %s (listeners %s)\n", health, p.Reason, strings.Join(p.Listeners, ", "))
		if p.Error != "" {
			fmt.Fprintf(&b, "  last error: %s\n", p.Error)
		}
	}
	if len(rep.Transitions) > 0 {
		fmt.Fprintln(&b, "\nrecent transitions:")
	}
	for _, t := range rep.Transitions {
		fmt.Fprintf(&b, "%s %s %s (%s): %s", t.At.UTC().Format(time.RFC3339Nano), t.Action, t.Prefix, t.Cause, t.Reason)
		if t.Error != "" {
			fmt.Fprintf(&b, ": FAILED: %s", t.Error)
		}
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, b.String())
}

// registerReadinessMetrics adds pqedge_ready, the anycast transition
// counter and the per-prefix gauges to the registry. The gauges are read
// from the Controller at scrape time, so a prefix removed by a reload has
// no series left behind.
func (s *Server) registerReadinessMetrics() {
	s.anycastTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pqedge_anycast_transitions_total",
		Help: "Anycast announcements and withdrawals by prefix, action (announce, withdraw), cause (healthy, unhealthy, shutdown, removed) and result (ok, error: the device refused; the reason is logged).",
	}, []string{"prefix", "action", "cause", "result"})
	s.metrics.reg.MustRegister(s.anycastTransitions, stateCollector{s})
}

// stateCollector exports state that is read, not counted: readiness and
// each prefix's announcement.
type stateCollector struct{ s *Server }

var (
	readyDesc = prometheus.NewDesc("pqedge_ready",
		"1 when /readyz answers 200 (started, not shutting down, listeners bound, certificates valid, admin.ready_pools healthy), else 0.", nil, nil)
	announcedDesc = prometheus.NewDesc("pqedge_anycast_announced",
		"1 while an anycast prefix is announced (its address is on the anycast device), 0 while it is withdrawn.", []string{"prefix"}, nil)
	prefixHealthyDesc = prometheus.NewDesc("pqedge_anycast_healthy",
		"1 when the last health report of an anycast prefix was healthy; it is announced after rise samples and the hold-down.", []string{"prefix"}, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- readyDesc
	ch <- announcedDesc
	ch <- prefixHealthyDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, boolValue(c.s.readiness().Ready))
	n := c.s.anycast.Load()
	if n == nil {
		return
	}
	for _, st := range n.ctl.State() {
		ch <- prometheus.MustNewConstMetric(announcedDesc, prometheus.GaugeValue, boolValue(st.Announced), st.Prefix.String())
		ch <- prometheus.MustNewConstMetric(prefixHealthyDesc, prometheus.GaugeValue, boolValue(st.Healthy), st.Prefix.String())
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
