package config

import (
	"fmt"
	"time"

	"github.com/pqedge/pqedge/internal/connlimit"
)

// Bounds of the header size limits: below 1 KiB ordinary browser requests
// (cookies, user agents) no longer fit; above 16 MiB a limit protects
// nothing.
const (
	minHeaderLimit = 1 << 10
	maxHeaderLimit = 16 << 20
)

// Bounds of the header field caps: below 32 ordinary browser requests
// (and responses setting several cookies) no longer fit; above 10,000 a
// cap protects nothing the byte caps do not.
const (
	minHeaderFields = 32
	maxHeaderFields = 10000
)

// Bounds of limits.heap_floor: Go's own minimum heap goal is 4 MiB, so a
// smaller floor does nothing; beyond 64 GiB it is a typo.
const (
	minHeapFloor = 4 << 20
	maxHeapFloor = 64 << 30
)

// Or returns *p, or def when the key was absent.
func Or[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// checkLimits checks the [limits] table: sizes parse and are in range,
// counts are not negative, and no cap is hidden behind a smaller one.
func (v *validator) checkLimits() {
	l := v.cfg.Limits
	for _, s := range []struct {
		key string
		val Size
	}{{"limits.request_header", l.RequestHeader}, {"limits.response_header", l.ResponseHeader}} {
		if s.val == "" {
			continue
		}
		n, err := ParseSize(string(s.val))
		switch {
		case err != nil:
			v.addf(s.key, "write a byte count with an optional unit, like \"64KiB\" or \"1MiB\"", "%v", err)
		case n < minHeaderLimit || n > maxHeaderLimit:
			v.addf(s.key, "use a size from 1KiB to 16MiB", "%s %q is out of range", s.key[len("limits."):], string(s.val))
		}
	}
	if l.HeapFloor != "" {
		n, err := ParseSize(string(l.HeapFloor))
		switch {
		case err != nil:
			v.addf("limits.heap_floor", "write a byte count with a unit, like \"64MiB\", or \"0\" for none", "%v", err)
		case n != 0 && (n < minHeapFloor || n > maxHeapFloor):
			v.addf("limits.heap_floor", "use 0 (none) or a size from 4MiB to 64GiB", "heap_floor %q is out of range", string(l.HeapFloor))
		}
	}
	for _, f := range []struct {
		key string
		val *int
	}{{"limits.request_header_fields", l.RequestHeaderFields}, {"limits.response_header_fields", l.ResponseHeaderFields}} {
		if f.val != nil && (*f.val < minHeaderFields || *f.val > maxHeaderFields) {
			v.addf(f.key, fmt.Sprintf("use a count from %d to %d", minHeaderFields, maxHeaderFields), "%s %d is out of range", f.key[len("limits."):], *f.val)
		}
	}
	// Below a tenth a flood's handshakes all but stop: a relay hop in
	// debt waits up to 2 ms / share (connlimit.MinCPUShare). NaN fails
	// both comparisons.
	if s := l.HandshakeCPU; s != nil && !(*s >= connlimit.MinCPUShare && *s <= 1) {
		v.addf("limits.handshake_cpu", fmt.Sprintf("a share of the CPUs from %v to 1, not a percentage: e.g. 0.8; 1 turns the budget off", connlimit.MinCPUShare), "handshake_cpu %v is out of range", *s)
	}
	if l.RequestBodyMinRate != nil && *l.RequestBodyMinRate < 0 {
		v.addf("limits.request_body_min_rate", "bytes per second; 0 turns the floor off", "request_body_min_rate must not be negative")
	}
	counts := []struct {
		key string
		val *int
	}{
		{"handshakes", l.Handshakes}, {"handshake_queue", l.HandshakeQueue},
		{"connections", l.Connections}, {"connections_per_client", l.ConnectionsPerClient},
		{"handshakes_per_client", l.HandshakesPerClient}, {"h2_resets", l.H2Resets},
		{"requests_per_client", l.RequestsPerClient},
	}
	for _, c := range counts {
		if c.val != nil && *c.val < 0 {
			v.addf("limits."+c.key, "use 0 for no cap, or leave it out for the default", "%s must not be negative", c.key)
		}
	}
	total := Or(l.Connections, 0)
	for _, c := range []struct {
		key string
		val *int
	}{{"connections_per_client", l.ConnectionsPerClient}, {"handshakes", l.Handshakes}} {
		if n := Or(c.val, 0); total > 0 && n > total {
			v.addf("limits."+c.key, "it can never be reached; lower it or raise connections",
				"%s %d exceeds connections %d (line %d)", c.key, n, total, v.pos.line("limits.connections"))
		}
	}
	// Each handshake holds a connection: a client never has more
	// handshakes than connections.
	if n, per := Or(l.HandshakesPerClient, 0), Or(l.ConnectionsPerClient, DefaultConnectionsPerClient); per > 0 && n > per {
		where := "the default"
		if l.ConnectionsPerClient != nil {
			where = fmt.Sprintf("line %d", v.pos.line("limits.connections_per_client"))
		}
		v.addf("limits.handshakes_per_client", "it can never be reached; lower it or raise connections_per_client",
			"handshakes_per_client %d exceeds connections_per_client %d (%s)", n, per, where)
	} else if hs, q := Or(l.Handshakes, DefaultHandshakes), max(0, Or(l.HandshakeQueue, DefaultHandshakeQueue)); l.HandshakesPerClient != nil && hs > 0 && n > hs+q {
		// Nor more places than there are: slots and the queue. Saying
		// which value is a default tells an operator whose config passed
		// before why it fails now: handshake_queue's default fell from
		// 1024 to 256.
		v.addf("limits.handshakes_per_client", fmt.Sprintf("it can never be reached; lower it to %d or less, or raise handshakes or handshake_queue", hs+q),
			"handshakes_per_client %d exceeds the %d handshake places (handshakes %d %s + handshake_queue %d %s)",
			n, hs+q, hs, v.setWhere(l.Handshakes != nil, "limits.handshakes"), q, v.setWhere(l.HandshakeQueue != nil, "limits.handshake_queue"))
	}
	if w := l.H2ResetWindow; w != "" {
		if d, err := time.ParseDuration(string(w)); err == nil && d == 0 {
			v.addf("limits.h2_reset_window", "e.g. \"10s\"; set h2_resets = 0 to turn the check off", "h2_reset_window must be longer than 0")
		}
	}
}

// setWhere says where a key's value came from, for a problem's message:
// "at line N" when set, "by default" when not.
func (v *validator) setWhere(set bool, key string) string {
	if set {
		return fmt.Sprintf("at line %d", v.pos.line(key))
	}
	return "by default"
}
