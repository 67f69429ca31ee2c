package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

const probeAbout = `Reports which key-exchange groups a TLS 1.3 server accepts (directly, or
only after a HelloRetryRequest), its group preference, the certificate it
serves for each family of signature algorithms, and whether it survives a
ClientHello split across records and TCP writes. Over QUIC on the same UDP
port: whether it speaks HTTP/3 (ALPN h3), which groups it accepts there,
and whether its handshake fits the anti-amplification limit.

A service that does not speak TLS on HOST:PORT ends the probe with exit
status 1: named when its answer shows what it is (HTTP, SSH, SMTP, FTP,
POP3, IMAP, Redis), or reported as silent when it answers nothing. A
pqedge being probed counts the TCP handshakes as client family "pqedge",
apart from its visitors.
`

// runProbe is `pqedge probe`.
func runProbe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("probe", "probe HOST:PORT [-json] [-servername NAME] [-timeout D] [-quic=false] [-quic-timeout D]", probeAbout, stdout)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	serverName := fs.String("servername", "", "SNI and certificate `NAME` (default: the HOST of HOST:PORT unless it is an IP address)")
	timeout := fs.Duration("timeout", 5*time.Second, "limit `D` for each handshake")
	quicOn := fs.Bool("quic", true, "also probe HTTP/3 over QUIC on the same UDP port; -quic=false skips it")
	quicTimeout := fs.Duration("quic-timeout", defaultQUICTimeout, "limit `D` for each QUIC handshake (a server without QUIC costs one)")
	// Flags may come before or after HOST:PORT.
	positional, err := fs.parse(args)
	if err != nil {
		return cliFail(stderr, err)
	}
	if len(positional) != 1 {
		return cliFail(stderr, probeUsageError(fmt.Sprintf("probe needs exactly one HOST:PORT, got %d arguments", len(positional)),
			"example: pqedge probe example.com:443"))
	}
	addr := positional[0]
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return cliFail(stderr, probeUsageError(fmt.Sprintf("bad address %q: %v", addr, err), "give HOST:PORT, e.g. example.com:443 or [::1]:8443"))
	}
	if *timeout <= 0 || *quicTimeout <= 0 {
		return cliFail(stderr, probeUsageError(fmt.Sprintf("-timeout and -quic-timeout must be positive, got %s and %s", *timeout, *quicTimeout), "e.g. -timeout 5s -quic-timeout 2s"))
	}
	if *serverName == "" && net.ParseIP(host) == nil {
		*serverName = host
	}

	quicReport := startQUICProbe(context.Background(), *quicOn, addr, *serverName, *quicTimeout)
	report, err := leanclient.Probe(context.Background(), addr, leanclient.ProbeConfig{ServerName: *serverName, Timeout: *timeout})
	qrep, qerr := quicReport()
	if err == nil && qerr != nil {
		err = qerr
	}
	if err != nil {
		return cliFail(stderr, probeError(addr, err))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		out := probeJSON(report)
		out.QUIC = probeQUICJSON(qrep)
		if err := enc.Encode(out); err != nil {
			return cliFail(stderr, fmt.Errorf("failed to write JSON: %w", err))
		}
		return 0
	}
	printProbe(stdout, report)
	printProbeQUIC(stdout, qrep, *quicTimeout)
	return 0
}

// probeError says why a probe found nothing to report, with what to try.
func probeError(addr string, err error) error {
	var nt *leanclient.NotTLSError
	switch {
	case errors.As(err, &nt):
		return withHint(fmt.Errorf("%s is %w", addr, nt),
			"pqedge probe speaks TLS first: give the port of a TLS service (HTTPS is usually 443)")
	case errors.Is(err, leanclient.ErrNoAnswer):
		return withHint(fmt.Errorf("failed to probe %s: %w", addr, err),
			"check that "+addr+" is the TLS port of the service", "raise -timeout if the server is slow")
	case errors.Is(err, syscall.ECONNREFUSED):
		// Refused at once: nothing listens, and a longer -timeout would
		// not change that.
		return withHint(fmt.Errorf("failed to probe %s: %w", addr, err),
			"nothing listens on "+addr+": check the host and port, and that the server runs")
	}
	return withHint(fmt.Errorf("failed to probe %s: %w", addr, err),
		"check that a TLS server listens on "+addr, "raise -timeout if the server is slow")
}

// probeUsageError is a command-line mistake: exit code 2, with hints.
func probeUsageError(msg string, hints ...string) error {
	return &cliError{err: errors.New(msg), hints: hints, usage: true}
}

// probeReportJSON is the -json form: names, not codepoints.
type probeReportJSON struct {
	Address            string            `json:"address"`
	ServerName         string            `json:"server_name,omitempty"`
	Groups             []groupJSON       `json:"groups"`
	Preference         []string          `json:"preference"`
	FollowsClientOrder bool              `json:"follows_client_order"`
	Certificates       []certificateJSON `json:"certificates"`
	Splits             []splitJSON       `json:"split_client_hello"`
	QUIC               *quicJSON         `json:"quic,omitempty"` // absent with -quic=false
}

type groupJSON struct {
	Name   string `json:"name"`
	Status string `json:"status"` // direct, hrr-only, refused
	Direct bool   `json:"direct"`
	ViaHRR bool   `json:"via_hrr"`
	Error  string `json:"error,omitempty"`
}

type certificateJSON struct {
	SignatureList     string   `json:"signature_list"`
	Offered           []string `json:"offered"`
	OK                bool     `json:"ok"`
	SignatureScheme   string   `json:"signature_scheme,omitempty"`
	LeafKey           string   `json:"leaf_key,omitempty"`
	ChainLength       int      `json:"chain_length,omitempty"`
	ChainBytes        int      `json:"chain_bytes,omitempty"`
	ServerFlightBytes int      `json:"server_flight_bytes,omitempty"`
	Error             string   `json:"error,omitempty"`
}

type splitJSON struct {
	Mode  string `json:"mode"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func groupStatus(g leanclient.GroupSupport) string {
	switch {
	case g.Direct:
		return "direct"
	case g.ViaHRR:
		return "hrr-only"
	}
	return "refused"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func probeJSON(r *leanclient.ProbeReport) probeReportJSON {
	out := probeReportJSON{Address: r.Address, ServerName: r.ServerName, FollowsClientOrder: r.FollowsClientOrder,
		Preference: []string{}, Groups: []groupJSON{}, Certificates: []certificateJSON{}, Splits: []splitJSON{}}
	for _, g := range r.Groups {
		gj := groupJSON{Name: pqtls.GroupName(g.Group), Status: groupStatus(g), Direct: g.Direct, ViaHRR: g.ViaHRR}
		if !g.Direct {
			gj.Error = errString(g.Err)
		}
		out.Groups = append(out.Groups, gj)
	}
	for _, g := range r.Preference {
		out.Preference = append(out.Preference, pqtls.GroupName(g))
	}
	for _, c := range r.Certificates {
		cj := certificateJSON{SignatureList: c.Name, OK: c.Err == nil, Error: errString(c.Err)}
		for _, s := range c.Offered {
			cj.Offered = append(cj.Offered, pqtls.SignatureName(s))
		}
		if res := c.Result; res != nil {
			cj.SignatureScheme = pqtls.SignatureName(res.SignatureScheme)
			cj.LeafKey = leafKey(res)
			cj.ChainLength = len(res.RawCertificates)
			cj.ChainBytes = res.ChainBytes
			cj.ServerFlightBytes = res.ServerFlightBytes
		}
		out.Certificates = append(out.Certificates, cj)
	}
	for _, s := range r.Splits {
		out.Splits = append(out.Splits, splitJSON{Mode: s.Mode.String(), OK: s.Err == nil, Error: errString(s.Err)})
	}
	return out
}

func leafKey(res *leanclient.Result) string {
	if len(res.Certificates) == 0 {
		return ""
	}
	return pqtls.KeyAlgorithm(res.Certificates[0].PublicKey)
}

// shortErr is the part of a handshake error a table cell can hold: the
// alert name, or the error kind.
func shortErr(err error) string {
	var e *leanclient.Error
	if errors.As(err, &e) {
		if e.Kind == leanclient.KindAlert {
			return "alert " + leanclient.AlertName(e.Alert)
		}
		return e.Kind.String()
	}
	return errString(err)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printProbe(w io.Writer, r *leanclient.ProbeReport) {
	fmt.Fprintf(w, "probe of %s", r.Address)
	if r.ServerName != "" {
		fmt.Fprintf(w, " (server name %s)", r.ServerName)
	}
	fmt.Fprint(w, "\n\nkey exchange groups\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  GROUP\tPQ\tSTATUS\tDIRECT\tVIA HRR\tDIRECT ERROR")
	for _, g := range r.Groups {
		de := ""
		if !g.Direct {
			de = shortErr(g.Err)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", pqtls.GroupName(g.Group), yesNo(pqtls.IsPostQuantumGroup(g.Group)),
			groupStatus(g), yesNo(g.Direct), yesNo(g.ViaHRR), de)
	}
	tw.Flush()

	names := make([]string, len(r.Preference))
	for i, g := range r.Preference {
		names[i] = pqtls.GroupName(g)
	}
	order := "server's own order"
	if r.FollowsClientOrder {
		order = "follows the client's order"
	}
	fmt.Fprintf(w, "\npreference: %s (%s)\n", strings.Join(names, " > "), order)

	fmt.Fprint(w, "\ncertificates by signature_algorithms offered\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  OFFERED\tRESULT\tSCHEME\tLEAF KEY\tCHAIN\tCHAIN BYTES\tFLIGHT BYTES")
	for _, c := range r.Certificates {
		if c.Err != nil {
			fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\t-\t-\n", c.Name, shortErr(c.Err))
			continue
		}
		res := c.Result
		fmt.Fprintf(tw, "  %s\tok\t%s\t%s\t%d\t%d\t%d\n", c.Name, pqtls.SignatureName(res.SignatureScheme), leafKey(res),
			len(res.RawCertificates), res.ChainBytes, res.ServerFlightBytes)
	}
	tw.Flush()

	fmt.Fprint(w, "\nsplit ClientHello\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SPLIT\tRESULT")
	for _, s := range r.Splits {
		res := "ok"
		if s.Err != nil {
			res = "failed: " + shortErr(s.Err)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", s.Mode, res)
	}
	tw.Flush()
}
