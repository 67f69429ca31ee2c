package anycast

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds each request to the kernel: a netlink socket that
// never answers (a kernel bug, a frozen cgroup) must not hang a health
// transition or the shutdown behind it.
const netlinkTimeout = 5 * time.Second

// Device is the TUN device pqedge announces through. Its addresses are the
// announcement copies of the service prefixes; BIRD's `protocol direct`
// turns each into a route. The device exists only while the Device is open
// in this process (see the package doc: the dead-man switch).
//
// A Device acts in the network namespace that was current when OpenDevice
// ran, whatever goroutine calls it later. Its methods are safe for
// concurrent use.
type Device struct {
	name string

	mu    sync.Mutex // guards the fields below
	h     *netlink.Handle
	tun   *os.File // the only reference to the device
	index int
}

// OpenDevice creates the TUN device name in the current network namespace
// and brings it up. It fails if a device of that name exists (another
// pqedge holds it, or a stale persistent device is in the way): pqedge
// never adopts a device it did not create, since one that outlives the
// process would keep announcing for a dead node. It needs CAP_NET_ADMIN
// and /dev/net/tun.
func OpenDevice(name string) (*Device, error) {
	if err := CheckDeviceName(name); err != nil {
		return nil, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("failed to open a netlink socket: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("failed to set the netlink socket timeout: %w", err)
	}
	d := &Device{name: name, h: h}
	if err := d.create(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// create makes the non-persistent TUN device and brings it up.
func (d *Device) create() error {
	if _, err := d.h.LinkByName(d.name); err == nil {
		return fmt.Errorf("failed to create anycast device %q: a device of that name exists (another pqedge, or a leftover persistent device: `ip link del %s`)", d.name, d.name)
	}
	tun := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: d.name},
		Mode:      netlink.TUNTAP_MODE_TUN,
		// TUN_EXCL: never attach to a device someone else created between
		// the check above and now.
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_TUN_EXCL,
		Queues:     1, // with 0 the library closes the descriptor: the device would vanish
		NonPersist: true,
	}
	if err := d.h.LinkAdd(tun); err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("failed to create anycast device %q: /dev/net/tun is missing (containers need it passed in): %w", d.name, err)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("failed to create anycast device %q: pqedge needs CAP_NET_ADMIN: %w", d.name, err)
		}
		return fmt.Errorf("failed to create anycast device %q: %w", d.name, err)
	}
	if len(tun.Fds) == 1 {
		d.tun = tun.Fds[0]
	}
	if d.tun == nil {
		return fmt.Errorf("failed to create anycast device %q: the TUN descriptor was not kept", d.name)
	}
	d.index = tun.Attrs().Index
	if d.index == 0 {
		return fmt.Errorf("failed to create anycast device %q: it has no interface index", d.name)
	}
	// With addrgenmode none the device gets no IPv6 link-local address, so
	// the kernel sends no router solicitations into a device nobody reads.
	// A kernel without IPv6 refuses the setting and needs none: ignore it.
	_ = d.h.LinkSetIP6AddrGenMode(tun, nl.IN6_ADDR_GEN_MODE_NONE)
	if err := d.h.LinkSetUp(tun); err != nil {
		return fmt.Errorf("failed to bring anycast device %q up: %w", d.name, err)
	}
	return nil
}

// Name returns the device's interface name.
func (d *Device) Name() string { return d.name }

// Announce adds p's announcement copy to the device. Announcing an
// announced prefix succeeds.
func (d *Device) Announce(p netip.Prefix) error {
	if err := CheckPrefix(p); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tun == nil {
		return fmt.Errorf("failed to announce %s: device %q is closed", p, d.name)
	}
	if err := d.h.AddrReplace(d.link(), addrOf(p)); err != nil {
		return fmt.Errorf("failed to announce %s on %s: %w", p, d.name, err)
	}
	return nil
}

// Withdraw removes p's announcement copy from the device. Withdrawing a
// prefix that is not announced, or withdrawing from a closed device (whose
// addresses the kernel already removed), succeeds.
func (d *Device) Withdraw(p netip.Prefix) error {
	if err := CheckPrefix(p); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tun == nil {
		return nil
	}
	err := d.h.AddrDel(d.link(), addrOf(p))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("failed to withdraw %s from %s: %w", p, d.name, err)
	}
	return nil
}

// Announced lists the prefixes announced on the device, as the kernel has
// them.
func (d *Device) Announced() ([]netip.Prefix, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tun == nil {
		return nil, nil
	}
	return d.prefixes(d.link())
}

// EnsureLoopback adds the service address p to the loopback interface lo
// unless it is there already, and reports whether it added it. It never
// removes an address from lo (see the package doc).
func (d *Device) EnsureLoopback(p netip.Prefix) (added bool, err error) {
	if err := CheckPrefix(p); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		return false, fmt.Errorf("failed to add %s to lo: device %q is closed", p, d.name)
	}
	lo, err := d.h.LinkByName("lo")
	if err != nil {
		return false, fmt.Errorf("failed to find the loopback interface: %w", err)
	}
	have, err := d.prefixes(lo)
	if err != nil {
		return false, err
	}
	if slices.Contains(have, p) {
		return false, nil
	}
	if err := d.h.AddrAdd(lo, addrOf(p)); err != nil && !errors.Is(err, unix.EEXIST) {
		return false, fmt.Errorf("failed to add %s to lo: %w", p, err)
	}
	return true, nil
}

// Close deletes the device, and with it every announcement: the kernel
// removes a non-persistent TUN device when its last descriptor closes.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if d.tun != nil {
		err = d.tun.Close()
		d.tun = nil
	}
	if d.h != nil {
		d.h.Close()
		d.h = nil
	}
	if err != nil {
		return fmt.Errorf("failed to close anycast device %q: %w", d.name, err)
	}
	return nil
}

// link names the device by index, so a device renamed behind pqedge's back
// is still the one changed.
func (d *Device) link() netlink.Link {
	return &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Index: d.index, Name: d.name}}
}

func (d *Device) prefixes(l netlink.Link) ([]netip.Prefix, error) {
	addrs, err := d.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("failed to list the addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out, nil
}

// addrOf is p as a netlink address. IPv6 copies skip duplicate address
// detection (an announcement must take effect now, and the address is
// meant to exist on many nodes). No address gets a prefix route: a single
// address needs only the local route the kernel adds anyway, and the TUN
// device must carry no traffic.
func addrOf(p netip.Prefix) *netlink.Addr {
	ip := net.IP(p.Addr().AsSlice())
	a := &netlink.Addr{
		IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Flags: unix.IFA_F_NOPREFIXROUTE,
	}
	if p.Addr().Is6() {
		a.Flags |= unix.IFA_F_NODAD
	}
	return a
}
