package pages

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pqedge/pqedge/pqtls"
)

// whatIfMLKEM says, for the inspect page, what would change for this
// connection if the client offered ML-KEM, given what it did offer and the
// site's policy. It is one or two sentences for people, not a protocol
// statement.
func whatIfMLKEM(h *pqtls.Handshake, policy pqtls.Policy) string {
	var siteGroups []string
	for _, g := range policy.Groups {
		if pqtls.IsPostQuantumGroup(g) {
			siteGroups = append(siteGroups, pqtls.GroupName(g))
		}
	}
	if len(siteGroups) == 0 {
		return "Nothing: this site's policy enables no ML-KEM group. The operator would have to add one, such as X25519MLKEM768, to its groups."
	}
	best := policy.Groups[slices.IndexFunc(policy.Groups, pqtls.IsPostQuantumGroup)]
	info, _ := pqtls.LookupGroup(best)
	if h.PostQuantum() {
		if h.HelloRetry {
			first := ""
			if h.Client != nil && len(h.Client.KeyShares) > 0 {
				first = " (it sent " + keyShareNames(h.Client) + ")"
			}
			return fmt.Sprintf("Your client already offers ML-KEM, but its first key share%s was not one this site uses; sending a %s key share up front would save the HelloRetryRequest round trip.",
				first, pqtls.GroupName(h.Group))
		}
		return "Nothing: your client already uses ML-KEM (" + h.GroupName() + ")."
	}
	if h.Resumed && h.Group == 0 {
		return "A fresh handshake offering " + info.Name + " would be protected; this resumed session has no key exchange of its own."
	}
	if c := h.Client; c != nil {
		var offered []string
		for _, g := range c.Groups {
			if pqtls.IsPostQuantumGroup(g) {
				offered = append(offered, pqtls.GroupName(g))
			}
		}
		if len(offered) > 0 {
			return fmt.Sprintf("Your client offers %s, which this site does not enable (it serves %s): the operator would have to add one of them.",
				strings.Join(offered, ", "), strings.Join(siteGroups, ", "))
		}
	}
	var current int
	if g, ok := pqtls.LookupGroup(h.Group); ok {
		current = g.ServerShare
	}
	s := fmt.Sprintf("If your client offered %s, this connection would use it and be protected against harvest-now-decrypt-later. Its ClientHello would grow by about %d bytes (the key share) and the server's reply by %d bytes; no extra round trip.",
		info.Name, info.ClientShare, info.ServerShare-current)
	if policy.WarnClassical {
		s += " This site would also stop sending the " + PQWarningHeader + " header."
	}
	return s
}

func keyShareNames(c *pqtls.ClientHello) string {
	names := make([]string, len(c.KeyShares))
	for i, ks := range c.KeyShares {
		names[i] = pqtls.GroupName(ks.Group)
	}
	return strings.Join(names, ", ")
}
