package bench

import (
	"fmt"
	"strings"
)

// Check is one of the performance targets pqedge's benchmarks track, as
// it held (or did not) in a matrix run.
type Check struct {
	Name   string `json:"name"`
	Holds  bool   `json:"holds"`
	Detail string `json:"detail"`
	// Skipped is set when the run had no cell to judge the target by.
	Skipped bool `json:"skipped,omitempty"`
}

// Checks judges the targets on a matrix result:
//   - the client costs at most 0.3x the server (ECDSA P-256, X25519MLKEM768),
//     so the harness measures the server and not itself;
//   - repeated runs of every cell agree within SpreadLimit;
//   - pqedge is within 1.10x of plain crypto/tls for classical certificates;
//   - pqedge is below nginx for ML-DSA certificates;
//   - with a request (MatrixResult.Request), pqedge is within 1.05x of
//     the plain Go proxy for every certificate (issue 13's handshake
//     target: a first visit, not a bare handshake).
func Checks(r *MatrixResult) []Check {
	find := func(server, group, cert string) *Cell {
		for i := range r.Cells {
			c := &r.Cells[i]
			if c.Server == server && c.Transport != TransportQUIC && c.Group == group && c.Cert == cert && c.Error == "" {
				return c
			}
		}
		return nil
	}
	var out []Check

	client := Check{Name: "client CPU <= 0.3x server (ecdsa-p256, X25519MLKEM768)", Skipped: true}
	var parts []string
	client.Holds = true
	for _, s := range []string{ServerPQEdge, ServerPlain, ServerNginx} {
		if c := find(s, "X25519MLKEM768", "ecdsa-p256"); c != nil && c.ServerCPU > 0 {
			ratio := float64(c.ClientCPU) / float64(c.ServerCPU)
			client.Skipped = false
			client.Holds = client.Holds && ratio <= 0.3
			parts = append(parts, fmt.Sprintf("%s %.2fx", s, ratio))
		}
	}
	client.Detail = strings.Join(parts, ", ")
	out = append(out, client)

	spread := Check{Name: fmt.Sprintf("repeated runs agree within %.0f%%", 100*SpreadLimit), Holds: true, Skipped: true}
	var noisy []string
	measured := 0
	for _, c := range r.Cells {
		if c.Error != "" || len(c.Runs) < 2 {
			continue
		}
		measured++
		spread.Skipped = false
		if c.Noisy {
			spread.Holds = false
			noisy = append(noisy, fmt.Sprintf("%s/%s/%s %.0f%%", c.Server, c.Group, c.Cert, 100*c.Spread))
		}
	}
	spread.Detail = fmt.Sprintf("%d of %d cells over the limit", len(noisy), measured)
	if len(noisy) > 0 {
		spread.Detail += ": " + strings.Join(noisy, ", ")
	}
	out = append(out, spread)

	ratioCheck := func(name string, certs func(CertAlg) bool, other string, ok func(ratio float64) bool) Check {
		ch := Check{Name: name, Holds: true, Skipped: true}
		var worst float64
		var worstCell string
		n := 0
		for _, c := range r.Cells {
			alg, err := ParseCertAlg(c.Cert)
			if c.Server != ServerPQEdge || c.Transport == TransportQUIC || c.Error != "" || err != nil || !certs(alg) {
				continue
			}
			cert := c.Cert
			if other == ServerNginx {
				cert = alg.KeyName()
			}
			o := find(other, c.Group, cert)
			if o == nil || o.ServerCPU == 0 {
				continue
			}
			n++
			ch.Skipped = false
			ratio := float64(c.ServerCPU) / float64(o.ServerCPU)
			if ratio > worst {
				worst, worstCell = ratio, c.Group+"/"+c.Cert
			}
			ch.Holds = ch.Holds && ok(ratio)
		}
		if n > 0 {
			ch.Detail = fmt.Sprintf("%d cells; worst pqedge/%s %.2fx (%s)", n, other, worst, worstCell)
		}
		return ch
	}
	classical := func(a CertAlg) bool { return !a.PostQuantum() }
	mldsa := func(a CertAlg) bool { return a.PostQuantum() }
	out = append(out, ratioCheck("pqedge server CPU <= 1.10x plain crypto/tls (classical certificates)", classical, ServerPlain, func(r float64) bool { return r <= 1.10 }))
	out = append(out, ratioCheck("pqedge server CPU < nginx (ML-DSA certificates)", mldsa, ServerNginx, func(r float64) bool { return r < 1 }))
	if r.Request != "" {
		all := func(CertAlg) bool { return true }
		out = append(out, ratioCheck("pqedge server CPU <= 1.05x the plain Go proxy (handshake + GET "+r.Request+" + close)", all, ServerPlain, func(r float64) bool { return r <= 1.05 }))
	}
	return out
}
