package pages

import (
	_ "embed"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Compat is the built-in compat page (handler = "compat"): a table of the
// [compat] combinations that the visitor's browser fills in by fetching
// each combination listener's inspect JSON. The server makes one per
// config generation.
type Compat struct {
	// Combinations lists the matrix with each listener's bound port.
	Combinations []CompatEntry
	// Log is what the server saw on the combination listeners; it outlives
	// generations, so a reload does not forget a visitor's probes.
	Log *CompatLog
	Now func() time.Time
}

// CompatReport is the compat page's JSON (?format=json).
type CompatReport struct {
	// Since is the server time (Unix milliseconds) the page was made; the
	// page sends it back with ?seen= to learn what the server saw since.
	Since        int64         `json:"since"`
	Combinations []CompatEntry `json:"combinations"`
}

// CompatEntry is one combination and, with ?seen=, the server's view of the
// visitor's latest handshake on it.
type CompatEntry struct {
	Listener string `json:"listener"`
	Group    string `json:"group"`
	Cert     string `json:"cert"`
	PQGroup  bool   `json:"pq_group"`
	PQCert   bool   `json:"pq_cert"`
	Port     int    `json:"port"`
	// Seen is set with ?seen=: nil when no handshake from the visitor's
	// address reached the listener (a connection refused or blocked).
	Seen *CompatSeen `json:"seen,omitempty"`
}

// CompatSeen is a handshake the server saw on a combination listener.
type CompatSeen struct {
	OK        bool   `json:"ok"`
	Reason    string `json:"reason,omitempty"` // failure kind, as in pqedge_handshake_failures_total
	Group     string `json:"group,omitempty"`
	Signature string `json:"signature,omitempty"`
	// OfferedGroup and OfferedSignature say whether the ClientHello offered
	// the combination's group and a signature scheme its certificate can
	// sign with, so the page can tell "does not offer it" from "offered it,
	// then rejected the certificate".
	OfferedGroup     bool `json:"offered_group"`
	OfferedSignature bool `json:"offered_signature"`
}

//go:embed compat.html
var compatHTML string

var compatTemplate = template.Must(template.New("compat").Parse(compatHTML))

func (h *Compat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	render(w, r, compatTemplate, "compat", h.report(r))
}

func (h *Compat) report(r *http.Request) CompatReport {
	rep := CompatReport{Since: h.Now().UnixMilli()}
	var seen map[string]CompatSeen
	if v := r.URL.Query().Get("seen"); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			seen = h.Log.LastSeen(host, time.UnixMilli(ms))
		}
	}
	for _, e := range h.Combinations {
		if s, ok := seen[e.Listener]; ok {
			e.Seen = &s
		}
		rep.Combinations = append(rep.Combinations, e)
	}
	return rep
}

// CompatLog remembers recent handshakes on the combination listeners, so
// the page can tell a visitor why a probe failed: a handshake the server
// completed but the browser's fetch failed means the browser rejected the
// certificate. Safe for concurrent use.
type CompatLog struct {
	mu     sync.Mutex // guards recent
	recent []compatSeen
}

type compatSeen struct {
	CompatSeen
	remote   string // client IP
	listener string
	at       time.Time
}

// compatRecentMax bounds the handshakes remembered across all visitors.
const compatRecentMax = 512

// Remember records one handshake on a combination listener from remote
// (the client's address, "ip:port").
func (l *CompatLog) Remember(listener, remote string, at time.Time, seen CompatSeen) {
	s := compatSeen{CompatSeen: seen, listener: listener, at: at}
	if host, _, err := net.SplitHostPort(remote); err == nil {
		s.remote = host
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recent) >= compatRecentMax {
		l.recent = append(l.recent[:0], l.recent[len(l.recent)-compatRecentMax/2:]...)
	}
	l.recent = append(l.recent, s)
}

// LastSeen returns the latest handshake from the client IP remote on each
// combination listener since since.
func (l *CompatLog) LastSeen(remote string, since time.Time) map[string]CompatSeen {
	out := map[string]CompatSeen{}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.recent {
		if s.remote == remote && !s.at.Before(since) {
			out[s.listener] = s.CompatSeen
		}
	}
	return out
}

// CORSInspect is the inspect page of a combination listener. The compat
// page fetches it from another origin (same host, another port), so it
// allows exactly that: an Origin whose host is the host the request came
// to. Other sites cannot read a visitor's handshake details through it.
type CORSInspect struct{}

func (CORSInspect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	if o := r.Header.Get("Origin"); o != "" && sameHost(o, r.Host) {
		w.Header().Set("Access-Control-Allow-Origin", o)
	}
	Inspect{}.ServeHTTP(w, r)
}

// sameHost reports whether an Origin header names an https origin on the
// host of a Host header (any port).
func sameHost(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "https" {
		return false
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	return strings.EqualFold(u.Hostname(), strings.Trim(h, "[]"))
}
