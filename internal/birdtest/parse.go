package birdtest

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// maxOutput caps what the parsers read: a test network's tables are a few
// routes, so anything near this is a runaway, not a table.
const maxOutput = 1 << 20

// Route is one route of `birdc show route` (or `show route all`).
type Route struct {
	Table    string // e.g. "master4"
	Prefix   netip.Prefix
	Type     string // unicast, unreachable, blackhole, prohibited
	Protocol string // the protocol instance that made it, e.g. "edge4"
	Since    string // as BIRD prints it, e.g. "05:11:00.720" (timeformat route)
	// Primary is true for the route BIRD selected for the network (the
	// '*'); a network learned from two peers has one primary route.
	Primary    bool
	Kind       string // a protocol's route kind, e.g. OSPF "I" or "E2"; often empty
	Preference int
	Metric     string // the second number of "(150/20)"; empty when absent
	Info       string // e.g. "[AS65001i]" (BGP origin AS) or "[10.98.0.1]" (OSPF router)
	NextHops   []NextHop
	Attrs      []Attr // `show route all` only, in BIRD's order
}

// NextHop is a "via ADDR on DEV" or "dev DEV" line of a route.
type NextHop struct {
	Via    netip.Addr // invalid for a device route
	Dev    string
	Weight int    // ECMP weight; 0 when not printed
	Extra  string // anything BIRD printed after these, e.g. "onlink"
}

// Attr is one "Name: value" line of `show route all`.
type Attr struct {
	Name, Value string
}

// ParseRoutes parses the output of `birdc show route [all]` (BIRD 2). A
// "Network not found" answer is no routes. Any line it does not recognise
// is an error naming the line.
func ParseRoutes(out []byte) ([]Route, error) {
	if len(out) > maxOutput {
		return nil, fmt.Errorf("failed to parse routes: %d bytes of output, more than %d", len(out), maxOutput)
	}
	var (
		routes []Route
		table  string
		net    string // the network of the last header line: continuations repeat it
	)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "", trimmed == "Network not found", n == 1 && isBanner(trimmed):
		case strings.HasPrefix(line, "Table ") && strings.HasSuffix(line, ":"):
			table = strings.TrimSuffix(strings.TrimPrefix(line, "Table "), ":")
			net = ""
		case strings.HasPrefix(line, "\t"):
			if len(routes) == 0 {
				return nil, fmt.Errorf("line %d: %q belongs to no route", n, trimmed)
			}
			if err := parseRouteDetail(&routes[len(routes)-1], trimmed); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		default:
			if table == "" {
				return nil, fmt.Errorf("line %d: route %q outside a table", n, trimmed)
			}
			rest := trimmed
			if !strings.HasPrefix(line, " ") {
				net, rest, _ = strings.Cut(trimmed, " ")
			} else if net == "" {
				return nil, fmt.Errorf("line %d: continuation %q with no network before it", n, trimmed)
			}
			r, err := parseRouteHeader(net, strings.TrimSpace(rest))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			r.Table = table
			routes = append(routes, r)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read routes: %w", err)
	}
	return routes, nil
}

// isBanner matches birdc's greeting, "BIRD 2.0.12 ready.".
func isBanner(line string) bool {
	return strings.HasPrefix(line, "BIRD ") && strings.HasSuffix(line, " ready.")
}

// parseRouteHeader parses `TYPE [PROTO SINCE] [*] [KIND] (PREF[/METRIC]) [INFO]`.
func parseRouteHeader(net, rest string) (Route, error) {
	var r Route
	p, err := netip.ParsePrefix(net)
	if err != nil {
		return r, fmt.Errorf("bad network %q", net)
	}
	r.Prefix = p
	r.Type, rest, _ = strings.Cut(rest, " ")
	if r.Type == "" {
		return r, fmt.Errorf("route %s has no type", net)
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, "[") {
		return r, fmt.Errorf("route %s: want [protocol since], got %q", net, rest)
	}
	src, rest, ok := strings.Cut(rest[1:], "]")
	if !ok {
		return r, fmt.Errorf("route %s: unterminated [protocol since]", net)
	}
	r.Protocol, r.Since, _ = strings.Cut(src, " ")
	if r.Protocol == "" {
		return r, fmt.Errorf("route %s has no protocol", net)
	}
	fields := strings.Fields(rest)
	if len(fields) > 0 && fields[0] == "*" {
		r.Primary = true
		fields = fields[1:]
	}
	i := 0
	for i < len(fields) && !strings.HasPrefix(fields[i], "(") {
		i++
	}
	if i == len(fields) {
		return r, fmt.Errorf("route %s has no (preference)", net)
	}
	r.Kind = strings.Join(fields[:i], " ")
	pref, ok := strings.CutPrefix(fields[i], "(")
	if pref, ok = strings.CutSuffix(pref, ")"); !ok {
		return r, fmt.Errorf("route %s: bad preference %q", net, fields[i])
	}
	pref, r.Metric, _ = strings.Cut(pref, "/")
	if r.Preference, err = strconv.Atoi(pref); err != nil || r.Preference < 0 {
		return r, fmt.Errorf("route %s: bad preference %q", net, fields[i])
	}
	r.Info = strings.Join(fields[i+1:], " ")
	return r, nil
}

// parseRouteDetail adds an indented line to r: a next hop or an attribute.
func parseRouteDetail(r *Route, line string) error {
	fields := strings.Fields(line)
	switch {
	case len(fields) >= 4 && fields[0] == "via" && fields[2] == "on":
		via, err := netip.ParseAddr(fields[1])
		if err != nil {
			return fmt.Errorf("bad next hop %q", fields[1])
		}
		hop := NextHop{Via: via, Dev: fields[3]}
		return addHop(r, hop, fields[4:])
	case len(fields) >= 2 && fields[0] == "dev":
		return addHop(r, NextHop{Dev: fields[1]}, fields[2:])
	}
	name, value, ok := strings.Cut(line, ":")
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("unexpected route detail %q", line)
	}
	r.Attrs = append(r.Attrs, Attr{Name: name, Value: strings.TrimSpace(value)})
	return nil
}

func addHop(r *Route, hop NextHop, rest []string) error {
	if len(rest) >= 2 && rest[0] == "weight" {
		w, err := strconv.Atoi(rest[1])
		if err != nil || w < 0 {
			return fmt.Errorf("bad weight %q", rest[1])
		}
		hop.Weight = w
		rest = rest[2:]
	}
	hop.Extra = strings.Join(rest, " ")
	r.NextHops = append(r.NextHops, hop)
	return nil
}

// Protocol is one row of `birdc show protocols`.
type Protocol struct {
	Name  string // e.g. "edge4"
	Proto string // e.g. "BGP", "Direct"
	Table string // "---" when it has none
	State string // up, down, start, stop
	Since string // as printed: a time, or a date and a time
	Info  string // e.g. "Established", "Active  Socket: Connection refused"
}

// protocolStates are the states BIRD 2 prints for a protocol.
var protocolStates = []string{"down", "start", "up", "stop", "flush"}

// ParseProtocols parses the output of `birdc show protocols`.
func ParseProtocols(out []byte) ([]Protocol, error) {
	if len(out) > maxOutput {
		return nil, fmt.Errorf("failed to parse protocols: %d bytes of output, more than %d", len(out), maxOutput)
	}
	var ps []Protocol
	sc := bufio.NewScanner(bytes.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case line == "", n == 1 && isBanner(line), len(f) >= 5 && f[0] == "Name" && f[1] == "Proto":
			continue
		case len(f) < 5:
			return nil, fmt.Errorf("line %d: want name, protocol, table, state and since, got %q", n, line)
		case !slices.Contains(protocolStates, f[3]) || f[4][0] < '0' || f[4][0] > '9':
			return nil, fmt.Errorf("line %d: %q is not a protocol row (state %q, since %q)", n, line, f[3], f[4])
		}
		p := Protocol{Name: f[0], Proto: f[1], Table: f[2], State: f[3], Since: f[4]}
		info := f[5:]
		if isDate(f[4]) && len(f) >= 6 {
			p.Since += " " + f[5]
			info = f[6:]
		}
		p.Info = strings.Join(info, " ")
		ps = append(ps, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read protocols: %w", err)
	}
	return ps, nil
}

// isDate matches the date of `timeformat protocol iso long`, 2026-11-30.
func isDate(s string) bool {
	return len(s) == 10 && s[4] == '-' && s[7] == '-'
}
