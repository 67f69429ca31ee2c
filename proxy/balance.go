package proxy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
)

// Policy picks the upstream of a pool for a new request or stream. A pool
// has its own Policy value, called from many goroutines at once: it must be
// safe for concurrent use and must not block.
//
// The models are CoreDNS forward's policy.go and Caddy's selection policies.
type Policy interface {
	// Pick returns the index in set of the upstream to use, or -1 when no
	// upstream of set is usable. client is the client's address, invalid
	// when unknown (a unix socket client).
	Pick(set UpstreamSet, client netip.Addr) int
}

// UpstreamSet is what a Policy picks from: a pool's upstreams in
// configuration order.
type UpstreamSet interface {
	Len() int
	// Usable reports whether upstream i may get new traffic: it passes its
	// health checks, is not ejected, and was not already tried for this
	// request.
	Usable(i int) bool
	// InFlight is the number of requests and streams on upstream i now,
	// across every pool that shares it.
	InFlight(i int) int64
	// Addr is upstream i's configured address.
	Addr(i int) string
}

// PolicyName names a built-in Policy in config files.
type PolicyName string

// The built-in policies.
const (
	// RoundRobin takes the usable upstreams in turn. The default.
	RoundRobin PolicyName = "round_robin"
	// LeastConn takes the usable upstream with the fewest requests and
	// streams in flight; ties go round-robin.
	LeastConn PolicyName = "least_conn"
	// RandomTwo draws two usable upstreams at random and takes the one with
	// fewer in flight (the power of two choices: Mitzenmacher 2001), which
	// spreads load almost as well as LeastConn without a global scan.
	RandomTwo PolicyName = "random_two"
	// IPHash sends each client address to the same upstream, by rendezvous
	// hashing (Thaler and Ravishankar 1998): when an upstream leaves, only
	// its own clients move, and they come back when it returns.
	IPHash PolicyName = "ip_hash"
	// First takes the first usable upstream in configuration order: the
	// others are standbys.
	First PolicyName = "first"
)

// DefaultPolicy is the policy of a pool whose options name none.
const DefaultPolicy = RoundRobin

var policies = []PolicyName{RoundRobin, LeastConn, RandomTwo, IPHash, First}

// PolicyNames lists the built-in policy names, for hints.
func PolicyNames() []string {
	names := make([]string, len(policies))
	for i, p := range policies {
		names[i] = string(p)
	}
	return names
}

// ParsePolicy returns a new Policy for a name ("" means DefaultPolicy).
func ParsePolicy(name string) (Policy, error) {
	switch PolicyName(name) {
	case "", RoundRobin:
		return new(roundRobin), nil
	case LeastConn:
		return new(leastConn), nil
	case RandomTwo:
		return randomTwo{}, nil
	case IPHash:
		return ipHash{}, nil
	case First:
		return first{}, nil
	}
	return nil, fmt.Errorf("unknown balance policy %q (known: %s)", name, strings.Join(PolicyNames(), ", "))
}

type roundRobin struct{ next atomic.Uint64 }

// Pick takes the next of the usable upstreams, counting only usable ones,
// so the share of an upstream that is down spreads over all the others
// instead of falling to its neighbour.
func (p *roundRobin) Pick(set UpstreamSet, _ netip.Addr) int {
	n := set.Len()
	var usable uint64 // bit i: upstream i is usable (first 64; pools are small)
	k := 0
	for i := range min(n, 64) {
		if set.Usable(i) {
			usable |= 1 << i
			k++
		}
	}
	if k == 0 {
		return -1
	}
	want := int((p.next.Add(1) - 1) % uint64(k))
	for i := range min(n, 64) {
		if usable&(1<<i) != 0 {
			if want == 0 {
				return i
			}
			want--
		}
	}
	return -1
}

type leastConn struct{ next atomic.Uint64 }

func (p *leastConn) Pick(set UpstreamSet, _ netip.Addr) int {
	n := set.Len()
	// Starting the scan at a rotating offset spreads ties instead of
	// piling them on the first upstream.
	start := int(p.next.Add(1)-1) % n
	best, bestLoad := -1, int64(0)
	for i := range n {
		j := (start + i) % n
		if !set.Usable(j) {
			continue
		}
		if load := set.InFlight(j); best < 0 || load < bestLoad {
			best, bestLoad = j, load
		}
	}
	return best
}

type randomTwo struct{}

func (randomTwo) Pick(set UpstreamSet, _ netip.Addr) int {
	n := set.Len()
	a := firstUsableFrom(set, rand.IntN(n), -1)
	if a < 0 {
		return -1
	}
	b := firstUsableFrom(set, rand.IntN(n), a)
	if b < 0 || set.InFlight(a) <= set.InFlight(b) {
		return a
	}
	return b
}

// firstUsableFrom scans set from start (wrapping) for a usable upstream other
// than not.
func firstUsableFrom(set UpstreamSet, start, not int) int {
	n := set.Len()
	for i := range n {
		if j := (start + i) % n; j != not && set.Usable(j) {
			return j
		}
	}
	return -1
}

type ipHash struct{}

func (ipHash) Pick(set UpstreamSet, client netip.Addr) int {
	key := client.Unmap().AsSlice()
	best, bestScore := -1, uint64(0)
	for i := range set.Len() {
		if !set.Usable(i) {
			continue
		}
		if s := rendezvousScore(key, set.Addr(i)); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// rendezvousScore is the weight of upstream addr for a client: 64-bit FNV-1a
// over both, finished with a 64-bit mix (the murmur3 finaliser) so that
// addresses differing in one byte do not get neighbouring scores. It is
// stable across processes and versions, so every pqedge of a fleet maps a
// client to the same upstream.
func rendezvousScore(client []byte, addr string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, b := range client {
		h = (h ^ uint64(b)) * prime
	}
	h = (h ^ 0xff) * prime // separator: "1.2.3.4"+"5:80" differs from "1.2.3"+"45:80"
	for i := 0; i < len(addr); i++ {
		h = (h ^ uint64(addr[i])) * prime
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

type first struct{}

func (first) Pick(set UpstreamSet, _ netip.Addr) int { return firstUsableFrom(set, 0, -1) }
