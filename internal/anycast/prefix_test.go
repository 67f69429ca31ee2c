package anycast

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   string // "" means valid
	}{
		{"192.0.2.53/32", ""},
		{"2001:db8::53/128", ""},
		{"198.51.100.0/32", ""},
		{"192.0.2.0/24", "must be a single address, 192.0.2.0/32"},
		{"192.0.2.53/31", "must be a single address, 192.0.2.53/32"},
		{"2001:db8::/64", "must be a single address, 2001:db8::/128"},
		{"::ffff:192.0.2.53/128", "IPv4-mapped IPv6 address; write 192.0.2.53/32"},
		{"0.0.0.0/32", "not a unicast service address"},
		{"::/128", "not a unicast service address"},
		{"127.0.0.1/32", "not a unicast service address"},
		{"::1/128", "not a unicast service address"},
		{"224.0.0.1/32", "not a unicast service address"},
		{"ff02::1/128", "not a unicast service address"},
		{"169.254.1.1/32", "not a unicast service address"},
		{"fe80::1/128", "not a unicast service address"},
		{"255.255.255.255/32", "not a unicast service address"},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			err := CheckPrefix(netip.MustParsePrefix(tc.prefix))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckPrefix = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("CheckPrefix = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := CheckPrefix(netip.Prefix{}); err == nil {
		t.Error("CheckPrefix(zero Prefix) = nil")
	}
}

func TestCheckDeviceName(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{"pqedge-any0", ""},
		{"anycast_1.v4", ""},
		{"a23456789012345", ""},
		{"", "empty device name"},
		{"a234567890123456", "longer than 15 bytes"},
		{".", "not allowed"},
		{"..", "not allowed"},
		{"any/0", "contains '/'"},
		{"any:0", "contains '/'"},
		{"any 0", "white space"},
		{"any%d", "'%'"},
		{"any\x7f", "outside printable ASCII"},
		{"anyé", "outside printable ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDeviceName(tc.name)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckDeviceName = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("CheckDeviceName = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
