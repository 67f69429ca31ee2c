package pages

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// adoptionMinutes is how far back the adoption counters reach: a day of
// one-minute buckets.
const adoptionMinutes = 24 * 60

// adoptionFamilies are the client families counted, in display order; the
// last entry stands for a ClientHello that was not captured.
var adoptionFamilies = [...]string{
	pqtls.FamilyChromium, pqtls.FamilyFirefox, pqtls.FamilySafari,
	pqtls.FamilyCurlOpenSSL, pqtls.FamilyGo, pqtls.FamilyOther, "unknown",
}

// Adoption counts completed handshakes per minute, by client family and
// whether the key exchange was post-quantum, and requests proxied to
// https:// upstreams by whether their client and origin legs were, for the
// last day. It is a ring indexed by the minute: a bucket whose minute is
// stale is reset on the next write, so nothing needs a ticker. It is safe
// for concurrent use; the server keeps one across config generations.
type Adoption struct {
	mu      sync.Mutex // guards buckets
	buckets [adoptionMinutes]adoptionBucket
}

type adoptionBucket struct {
	minute int64 // Unix minute counted here
	// counts[family][0] classical, [1] post-quantum.
	counts [len(adoptionFamilies)][2]uint32
	// origin counts requests proxied to https:// upstreams: [0] all, [1]
	// whose origin leg was post-quantum, [2] whose two legs both were.
	origin [3]uint32
}

func familyIndex(family string) int {
	if i := slices.Index(adoptionFamilies[:], family); i >= 0 {
		return i
	}
	return slices.Index(adoptionFamilies[:], pqtls.FamilyOther)
}

// Record counts one completed handshake at now.
func (a *Adoption) Record(now time.Time, family string, pq bool) {
	m := now.Unix() / 60
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &a.buckets[m%adoptionMinutes]
	if b.minute != m {
		*b = adoptionBucket{minute: m}
	}
	pqi := 0
	if pq {
		pqi = 1
	}
	b.counts[familyIndex(family)][pqi]++
}

// RecordOrigin counts one request proxied to an https:// upstream at now:
// whether its client leg (the handshake of the client's connection) and
// its origin leg (that of the upstream connection that carried it) were
// post-quantum. A request counts once however many requests its
// connections carried before: end to end is a property of each request.
func (a *Adoption) RecordOrigin(now time.Time, clientPQ, originPQ bool) {
	m := now.Unix() / 60
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &a.buckets[m%adoptionMinutes]
	if b.minute != m {
		*b = adoptionBucket{minute: m}
	}
	b.origin[0]++
	if originPQ {
		b.origin[1]++
		if clientPQ {
			b.origin[2]++
		}
	}
}

// AdoptionWindow is the post-quantum share of handshakes over one window.
type AdoptionWindow struct {
	Name     string           `json:"name"`
	Minutes  int              `json:"minutes"`
	Total    uint64           `json:"total"`
	PQ       uint64           `json:"pq"`
	Share    float64          `json:"share"` // PQ/Total, 0 without handshakes
	Families []AdoptionFamily `json:"families"`
	// EndToEnd is the window's requests to https:// upstreams.
	EndToEnd AdoptionEndToEnd `json:"end_to_end"`
}

// AdoptionEndToEnd is the share of requests proxied to https:// upstreams
// whose client leg and origin leg were both post-quantum: protected
// against harvest now, decrypt later all the way to the origin.
type AdoptionEndToEnd struct {
	Requests uint64  `json:"requests"`  // proxied to https:// upstreams
	OriginPQ uint64  `json:"origin_pq"` // whose origin leg was post-quantum
	PQ       uint64  `json:"pq"`        // whose two legs both were
	Share    float64 `json:"share"`     // PQ/Requests, 0 without requests
}

// AdoptionFamily is one client family's part of a window.
type AdoptionFamily struct {
	Family string  `json:"family"`
	Total  uint64  `json:"total"`
	PQ     uint64  `json:"pq"`
	Share  float64 `json:"share"`
}

// AdoptionReport is what the /adoption admin page serves as JSON.
type AdoptionReport struct {
	Now     time.Time        `json:"now"`
	Windows []AdoptionWindow `json:"windows"`
}

// window sums the buckets of the last minutes minutes, the current one
// included. Families without handshakes are left out.
func (a *Adoption) window(now time.Time, name string, minutes int) AdoptionWindow {
	cur := now.Unix() / 60
	var sums [len(adoptionFamilies)][2]uint64
	var origin [3]uint64
	a.mu.Lock()
	for i := range a.buckets {
		b := &a.buckets[i]
		if b.minute > cur-int64(minutes) && b.minute <= cur {
			for f := range b.counts {
				sums[f][0] += uint64(b.counts[f][0])
				sums[f][1] += uint64(b.counts[f][1])
			}
			for j := range b.origin {
				origin[j] += uint64(b.origin[j])
			}
		}
	}
	a.mu.Unlock()
	w := AdoptionWindow{Name: name, Minutes: minutes,
		EndToEnd: AdoptionEndToEnd{Requests: origin[0], OriginPQ: origin[1], PQ: origin[2], Share: share(origin[2], origin[0])}}
	for f, s := range sums {
		total := s[0] + s[1]
		if total == 0 {
			continue
		}
		w.Total += total
		w.PQ += s[1]
		w.Families = append(w.Families, AdoptionFamily{Family: adoptionFamilies[f], Total: total, PQ: s[1], Share: share(s[1], total)})
	}
	w.Share = share(w.PQ, w.Total)
	return w
}

func share(part, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(part) / float64(total)
}

// Report sums the last hour and the last day at now.
func (a *Adoption) Report(now time.Time) AdoptionReport {
	return AdoptionReport{Now: now, Windows: []AdoptionWindow{
		a.window(now, "last hour", 60),
		a.window(now, "last day", adoptionMinutes),
	}}
}

// AdoptionPage serves the /adoption admin page: HTML for people, JSON with
// ?format=json or Accept: application/json.
type AdoptionPage struct {
	Adoption *Adoption
	Now      func() time.Time
}

//go:embed adoption.html
var adoptionHTML string

var adoptionTemplate = template.Must(template.New("adoption").Funcs(template.FuncMap{
	"percent": func(f float64) string { return formatPercent(f) },
}).Parse(adoptionHTML))

func (h *AdoptionPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := h.Adoption.Report(h.Now())
	render(w, r, adoptionTemplate, "adoption", rep)
}

// formatPercent prints a share with one decimal: "87.5%".
func formatPercent(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
