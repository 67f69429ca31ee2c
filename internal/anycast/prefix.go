package anycast

import (
	"fmt"
	"net/netip"
	"strings"
)

// CheckPrefix reports whether p can be announced: a single unicast
// address, IPv4 /32 or IPv6 /128. Routers filter longer prefixes anyway,
// and a shorter one would announce addresses pqedge does not serve. An
// IPv4-mapped IPv6 address is refused with the IPv4 spelling to use, since
// it would be announced as an IPv6 route nobody reaches.
func CheckPrefix(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case !p.IsValid():
		return fmt.Errorf("invalid prefix")
	case a.Is4In6():
		return fmt.Errorf("prefix %s is an IPv4-mapped IPv6 address; write %s/32", p, a.Unmap())
	case a.Is4() && p.Bits() != 32:
		return fmt.Errorf("prefix %s must be a single address, %s/32", p, a)
	case a.Is6() && p.Bits() != 128:
		return fmt.Errorf("prefix %s must be a single address, %s/128", p, a)
	case a.Zone() != "":
		return fmt.Errorf("prefix %s has a zone; anycast addresses are global", p)
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("prefix %s is not a unicast service address", p)
	}
	return nil
}

// CheckDeviceName reports whether name is a valid Linux interface name
// that pqedge may create: 1 to 15 bytes (IFNAMSIZ), none of '/', ':' or
// white space, not "." or "..", and no printf-style template ("%d"), which
// the kernel would expand into a name BIRD's configuration does not watch.
func CheckDeviceName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty device name")
	case len(name) > 15:
		return fmt.Errorf("device name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("device name %q is not allowed", name)
	case strings.ContainsAny(name, "/:% \t\n\r\v\f"):
		return fmt.Errorf("device name %q contains '/', ':', '%%' or white space", name)
	}
	for _, r := range name {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("device name %q has a character outside printable ASCII", name)
		}
	}
	return nil
}
