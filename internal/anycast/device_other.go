//go:build !linux

package anycast

import (
	"errors"
	"net/netip"
)

var errNotLinux = errors.New("anycast announcements need Linux (a TUN device and netlink)")

// Device is the TUN device pqedge announces through; it exists on Linux
// only.
type Device struct{ name string }

// OpenDevice fails: anycast announcements need Linux.
func OpenDevice(name string) (*Device, error) { return nil, errNotLinux }

// Name returns the device's interface name.
func (d *Device) Name() string { return d.name }

// Announce fails: anycast announcements need Linux.
func (d *Device) Announce(p netip.Prefix) error { return errNotLinux }

// Withdraw fails: anycast announcements need Linux.
func (d *Device) Withdraw(p netip.Prefix) error { return errNotLinux }

// Announced fails: anycast announcements need Linux.
func (d *Device) Announced() ([]netip.Prefix, error) { return nil, errNotLinux }

// EnsureLoopback fails: anycast announcements need Linux.
func (d *Device) EnsureLoopback(p netip.Prefix) (bool, error) { return false, errNotLinux }

// Close does nothing.
func (d *Device) Close() error { return nil }
