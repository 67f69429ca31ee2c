package certs

import (
	"fmt"
	"net/netip"
	"strings"
)

// CheckName reports whether n may be a certificate's name and a site's
// server name: an IP address, or a DNS name of letters, digits and dashes
// in dot-separated labels of 1 to 63 bytes (RFC 1035 section 2.3.1, as
// relaxed by RFC 1123 section 2.1), optionally behind one "*." wildcard
// label (RFC 6125 section 6.4.3). A name outside these rules would be
// written into a certificate no client matches.
func CheckName(n string) error {
	if n == "" {
		return fmt.Errorf("empty server name")
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return nil
	}
	name := strings.TrimPrefix(n, "*.")
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("bad server name %q", n)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("bad server name %q: %q is not allowed", n, r)
			}
		}
	}
	return nil
}
