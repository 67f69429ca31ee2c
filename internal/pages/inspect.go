package pages

import (
	"context"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"

	"github.com/pqedge/pqedge/pqtls"
)

// Inspect is the built-in page about the visitor's own connection: HTML
// for people, JSON for programs (Accept: application/json or
// ?format=json). It reads the connection from the request context
// (WithConn).
type Inspect struct{}

// Conn is what the pages know of the visitor's connection. The server puts
// it in every request's context with WithConn.
type Conn struct {
	Handshake *pqtls.Handshake
	// Policy is the TLS policy of the site serving the request.
	Policy pqtls.Policy
	// Warning is the PQWarningHeader text sent on this classical connection
	// to a pq-warn site; "" otherwise.
	Warning string
}

// PQWarningHeader is set on responses to classical connections of a site
// under the pq-warn policy.
const PQWarningHeader = "PQEdge-PQ-Warning"

type connKey struct{}

// WithConn returns ctx carrying c.
func WithConn(ctx context.Context, c *Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// ConnFrom returns the Conn stored by WithConn, or nil.
func ConnFrom(ctx context.Context) *Conn {
	c, _ := ctx.Value(connKey{}).(*Conn)
	return c
}

// InspectReport is the JSON the inspect handler serves.
type InspectReport struct {
	Group     string `json:"group"`
	PQ        bool   `json:"pq"`
	Signature string `json:"signature"`
	// PQSignature is true for an ML-DSA server signature: post-quantum
	// authentication, which does not make recorded traffic safe (the key
	// exchange does).
	PQSignature bool   `json:"pq_signature"`
	Cipher      string `json:"cipher"`
	Version     string `json:"version"`
	ALPN        string `json:"alpn"`
	// Transport is "tcp" (TLS over TCP: HTTP/1.1, HTTP/2) or "quic"
	// (HTTP/3).
	Transport  string        `json:"transport"`
	ServerName string        `json:"server_name"`
	Resumed    bool          `json:"resumed"`
	HelloRetry bool          `json:"hello_retry"`
	Verdict    string        `json:"verdict"`
	Reason     string        `json:"reason"`
	Client     *ClientReport `json:"client,omitempty"`

	// IfMLKEM says what would change if the client offered ML-KEM, from its
	// offer and the site's policy; empty when the connection already uses
	// ML-KEM without a HelloRetryRequest (nothing would change).
	IfMLKEM string `json:"if_mlkem,omitempty"`
	// Warning is set for classical connections to a pq-warn site: the text
	// of the PQEdge-PQ-Warning header the responses carry.
	Warning string `json:"warning,omitempty"`
}

// ClientReport is what the client offered in its ClientHello.
type ClientReport struct {
	Groups                 []string         `json:"groups"`
	KeyShares              []KeyShareReport `json:"key_shares"`
	SignatureAlgorithms    []string         `json:"signature_algorithms"`
	ALPN                   []string         `json:"alpn"`
	Versions               []string         `json:"versions"`
	CipherSuites           []string         `json:"cipher_suites"`
	CertificateAuthorities int              `json:"certificate_authorities"`
	OffersPQGroup          bool             `json:"offers_pq_group"`
	OffersPQSignature      bool             `json:"offers_pq_signature"`
	ECH                    bool             `json:"ech"`
	Family                 string           `json:"family"`
	JA4                    string           `json:"ja4"`
	HelloBytes             int              `json:"hello_bytes"`
	// HelloRecords and HelloReads are the TLS records and TCP reads the
	// ClientHello took; 0 over QUIC, which has neither.
	HelloRecords int `json:"hello_records"`
	HelloReads   int `json:"hello_reads"`
	// HelloPackets and HelloDatagrams are the Initial packets and UDP
	// datagrams the ClientHello took over QUIC (an X25519MLKEM768 one does
	// not fit one 1,200-byte Initial); 0 over TCP.
	HelloPackets   int `json:"hello_packets,omitempty"`
	HelloDatagrams int `json:"hello_datagrams,omitempty"`
	// NotOverQUIC says, over QUIC, what the page cannot show there and
	// why; "" over TCP.
	NotOverQUIC string `json:"not_over_quic,omitempty"`
}

// notOverQUIC is ClientReport.NotOverQUIC.
const notOverQUIC = "Over QUIC the ClientHello travels in CRYPTO frames of Initial packets (RFC 9001 Section 4), not in TLS records over a TCP stream: " +
	"there are no records or reads to count, so the split-ClientHello shape shown over TCP does not exist here; the Initial packets and UDP datagrams it took are shown instead. " +
	"The server reads it by decrypting those Initial packets a second time, with the keys their connection ID gives anyone (RFC 9001 Section 5.2); " +
	"what the client sent after them (its own acknowledgements and Finished) is encrypted with keys only the connection has, and is not shown."

// KeyShareReport is one key share the client sent.
type KeyShareReport struct {
	Group string `json:"group"`
	Bytes int    `json:"bytes"`
}

//go:embed inspect.html
var inspectHTML string

var inspectTemplate = template.Must(template.New("inspect").Parse(inspectHTML))

func (Inspect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/favicon.ico" {
		// Browsers ask for it on every page; it is not the page.
		http.NotFound(w, r)
		return
	}
	c := ConnFrom(r.Context())
	if c == nil || c.Handshake == nil {
		http.Error(w, "500 Internal Server Error: no TLS handshake record for this connection", http.StatusInternalServerError)
		return
	}
	rep := newInspectReport(c.Handshake)
	if !c.Handshake.PostQuantum() || c.Handshake.HelloRetry {
		rep.IfMLKEM = whatIfMLKEM(c.Handshake, c.Policy)
	}
	rep.Warning = c.Warning
	render(w, r, inspectTemplate, "inspect", rep)
}

// render answers with rep as indented JSON when the client asks for JSON,
// else as the HTML page tmpl; the built-in pages are about the visitor's
// own connection, so they are never cached.
func render(w http.ResponseWriter, r *http.Request, tmpl *template.Template, page string, rep any) {
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := tmpl.Execute(w, rep); err != nil {
		http.Error(w, "500 Internal Server Error: failed to render the "+page+" page", http.StatusInternalServerError)
	}
}

func wantsJSON(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

func newInspectReport(h *pqtls.Handshake) InspectReport {
	rep := InspectReport{
		Group: h.GroupName(), PQ: h.PostQuantum(), Signature: h.SignatureName(), PQSignature: pqtls.IsPostQuantumSignature(h.Signature),
		Cipher: pqtls.CipherSuiteName(h.CipherSuite), Version: pqtls.VersionName(h.Version),
		ALPN: h.ALPN, Transport: h.Transport.String(), ServerName: h.ServerName, Resumed: h.Resumed, HelloRetry: h.HelloRetry,
	}
	if c := h.Client; c != nil {
		cr := &ClientReport{
			ALPN: c.ALPN, CertificateAuthorities: len(c.CertificateAuthorities), ECH: c.HasECH,
			Family: c.Family(), JA4: c.JA4(),
			HelloBytes: c.Wire.Size, HelloRecords: c.Wire.Records, HelloReads: c.Wire.Reads,
			HelloPackets: c.Wire.Packets, HelloDatagrams: c.Wire.Datagrams,
		}
		if h.Transport == pqtls.TransportQUIC {
			cr.NotOverQUIC = notOverQUIC
		}
		for _, g := range c.Groups {
			cr.Groups = append(cr.Groups, pqtls.GroupName(g))
			cr.OffersPQGroup = cr.OffersPQGroup || pqtls.IsPostQuantumGroup(g)
		}
		for _, ks := range c.KeyShares {
			cr.KeyShares = append(cr.KeyShares, KeyShareReport{Group: pqtls.GroupName(ks.Group), Bytes: ks.Size})
		}
		for _, s := range c.SignatureAlgorithms {
			cr.SignatureAlgorithms = append(cr.SignatureAlgorithms, pqtls.SignatureName(s))
			cr.OffersPQSignature = cr.OffersPQSignature || pqtls.IsPostQuantumSignature(s)
		}
		for _, v := range c.SupportedVersions {
			cr.Versions = append(cr.Versions, pqtls.VersionName(v))
		}
		for _, cs := range c.CipherSuites {
			if pqtls.IsGREASE(cs) {
				cr.CipherSuites = append(cr.CipherSuites, "GREASE")
				continue
			}
			// Unknown suites come out as 0xNNNN (crypto/tls's spelling).
			cr.CipherSuites = append(cr.CipherSuites, pqtls.CipherSuiteName(cs))
		}
		rep.Client = cr
	}
	rep.Verdict, rep.Reason = verdict(h, rep.Client)
	return rep
}

// verdict says in plain words whether the connection is protected against
// harvest-now-decrypt-later, and why.
func verdict(h *pqtls.Handshake, c *ClientReport) (string, string) {
	if h.PostQuantum() {
		reason := "The key exchange used " + h.GroupName() + ", which combines a classical algorithm with ML-KEM. " +
			"Traffic recorded today cannot be decrypted later by a quantum computer."
		if h.HelloRetry {
			reason += " Your client first sent a key share the server did not choose, which cost an extra round trip (HelloRetryRequest)."
		}
		return "protected", reason
	}
	switch {
	case h.Resumed && h.Group == 0:
		return "not protected", "This connection resumed an earlier session without a fresh key exchange; its protection is that of the original session."
	case c != nil && c.OffersPQGroup:
		return "not protected", "Your client offers a post-quantum group, but the server's policy for this site chose " + h.GroupName() + "."
	case c != nil:
		return "not protected", "Your client does not offer any post-quantum key exchange (such as X25519MLKEM768), so " + h.GroupName() +
			" was used. Someone recording this traffic could decrypt it once large quantum computers exist. Updating your browser or TLS library would fix this."
	}
	return "not protected", "The key exchange used " + h.GroupName() + ", a classical group."
}
