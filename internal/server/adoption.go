package server

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

// HandshakeEvent is what Options.OnHandshake receives.
type HandshakeEvent struct {
	Listener string
	Site     string // "" when the handshake failed before a site was chosen
	// Compat is true on the [compat] combination listeners.
	Compat bool
	// Handshake is the record of a completed handshake; nil when it failed.
	Handshake *pqtls.Handshake
	// Hello is the client's ClientHello, nil when it was not captured.
	Hello *pqtls.ClientHello
	// Err is why the handshake failed, and Reason its metrics label
	// (no_common_group, certificate, timeout...).
	Err    error
	Reason string
	Remote string // the client's address
}

// observeHandshake feeds one handshake outcome to the adoption counters, the
// compat page's recent-handshake list and Options.OnHandshake. It runs on
// the connection's goroutine, for every handshake: the event (and the
// formatted client address in it) is only built when something reads it.
func (srv *Server) observeHandshake(l *listenerRuntime, ec *edgeConn, rec *pqtls.Handshake, hello *pqtls.ClientHello, family, reason string, err error) {
	c := l.compat
	if c == nil && rec != nil {
		// Compat probes force one group each: counting them would make
		// the adoption share describe the matrix, not the visitors.
		srv.adoption.record(srv.now(), family, rec.PostQuantum())
	}
	if c == nil && srv.onHandshake == nil {
		return
	}
	site, _ := ec.chosen()
	ev := HandshakeEvent{Listener: l.cfg.Name, Compat: c != nil, Handshake: rec, Hello: hello, Err: err, Reason: reason, Remote: ec.RemoteAddr().String()}
	if site != nil {
		ev.Site = site.name
	}
	if c != nil {
		c.set.remember(c, ev, srv.now())
	}
	if srv.onHandshake != nil {
		srv.onHandshake(ev)
	}
}

// adoptionMinutes is how far back the adoption counters reach: a day of
// one-minute buckets.
const adoptionMinutes = 24 * 60

// adoptionFamilies are the client families counted, in display order; the
// last entry stands for a ClientHello that was not captured.
var adoptionFamilies = []string{
	pqtls.FamilyChromium, pqtls.FamilyFirefox, pqtls.FamilySafari,
	pqtls.FamilyCurlOpenSSL, pqtls.FamilyGo, pqtls.FamilyOther, "unknown",
}

// adoption counts completed handshakes per minute, by client family and
// whether the key exchange was post-quantum, for the last day. It is a ring
// indexed by the minute: a bucket whose minute is stale is reset on the next
// write, so nothing needs a ticker.
type adoption struct {
	mu      sync.Mutex // guards buckets
	buckets [adoptionMinutes]adoptionBucket
}

type adoptionBucket struct {
	minute int64 // Unix minute counted here
	// counts[family][0] classical, [1] post-quantum.
	counts [7][2]uint32
}

func newAdoption() *adoption { return &adoption{} }

func familyIndex(family string) int {
	if i := slices.Index(adoptionFamilies, family); i >= 0 {
		return i
	}
	return slices.Index(adoptionFamilies, pqtls.FamilyOther)
}

func (a *adoption) record(now time.Time, family string, pq bool) {
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

// AdoptionWindow is the post-quantum share of handshakes over one window.
type AdoptionWindow struct {
	Name     string           `json:"name"`
	Minutes  int              `json:"minutes"`
	Total    uint64           `json:"total"`
	PQ       uint64           `json:"pq"`
	Share    float64          `json:"share"` // PQ/Total, 0 without handshakes
	Families []AdoptionFamily `json:"families"`
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
func (a *adoption) window(now time.Time, name string, minutes int) AdoptionWindow {
	cur := now.Unix() / 60
	var sums [7][2]uint64
	a.mu.Lock()
	for i := range a.buckets {
		b := &a.buckets[i]
		if b.minute > cur-int64(minutes) && b.minute <= cur {
			for f := range b.counts {
				sums[f][0] += uint64(b.counts[f][0])
				sums[f][1] += uint64(b.counts[f][1])
			}
		}
	}
	a.mu.Unlock()
	w := AdoptionWindow{Name: name, Minutes: minutes}
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

func (a *adoption) report(now time.Time) AdoptionReport {
	return AdoptionReport{Now: now, Windows: []AdoptionWindow{
		a.window(now, "last hour", 60),
		a.window(now, "last day", adoptionMinutes),
	}}
}

// adoptionHandler serves the /adoption admin page: HTML for people, JSON
// with ?format=json or Accept: application/json.
type adoptionHandler struct {
	a   *adoption
	now func() time.Time
}

//go:embed adoption.html
var adoptionHTML string

var adoptionTemplate = template.Must(template.New("adoption").Funcs(template.FuncMap{
	"percent": func(f float64) string { return formatPercent(f) },
}).Parse(adoptionHTML))

func (h *adoptionHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := h.a.report(h.now())
	render(w, r, adoptionTemplate, "adoption", rep)
}

// formatPercent prints a share with one decimal: "87.5%".
func formatPercent(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
