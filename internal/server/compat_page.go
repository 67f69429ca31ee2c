package server

import (
	_ "embed"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// compatHandler is the built-in compat page (handler = "compat"): a table
// of the [compat] combinations that the visitor's browser fills in by
// fetching each combination listener's inspect JSON. Server.addCompat sets
// its fields once the generation's combination listeners exist.
type compatHandler struct {
	set *compatSet
	srv *Server
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
}

//go:embed compat.html
var compatHTML string

var compatTemplate = template.Must(template.New("compat").Parse(compatHTML))

func (h *compatHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.set == nil || h.srv == nil {
		http.Error(w, "503 Service Unavailable: the compat listeners are not running", http.StatusServiceUnavailable)
		return
	}
	rep := h.report(r)
	render(w, r, compatTemplate, "compat", rep)
}

func (h *compatHandler) report(r *http.Request) CompatReport {
	rep := CompatReport{Since: h.srv.now().UnixMilli()}
	var seen map[string]compatSeen
	if v := r.URL.Query().Get("seen"); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			seen = h.set.lastSeen(host, time.UnixMilli(ms))
		}
	}
	for _, c := range h.set.listeners {
		e := CompatEntry{Listener: c.listener.cfg.Name, Group: c.Group, Cert: c.Cert, PQGroup: c.pqGroup, PQCert: c.pqCert}
		if a, ok := h.srv.ListenerAddr(e.Listener).(*net.TCPAddr); ok {
			e.Port = a.Port
		}
		if s, ok := seen[e.Listener]; ok {
			e.Seen = &CompatSeen{OK: s.ok, Reason: s.reason, Group: s.group, Signature: s.signature}
		}
		rep.Combinations = append(rep.Combinations, e)
	}
	return rep
}

// corsInspect is the inspect handler of a combination listener. The compat
// page fetches it from another origin (same host, another port), so it
// allows exactly that: an Origin whose host is the host the request came
// to. Other sites cannot read a visitor's handshake details through it.
type corsInspect struct{}

func (corsInspect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	if o := r.Header.Get("Origin"); o != "" && sameHost(o, r.Host) {
		w.Header().Set("Access-Control-Allow-Origin", o)
	}
	inspectHandler{}.ServeHTTP(w, r)
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
