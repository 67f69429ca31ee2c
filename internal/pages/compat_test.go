package pages

import "testing"

func TestSameHost(t *testing.T) {
	for _, tt := range []struct {
		origin, host string
		want         bool
	}{
		{"https://localhost:8443", "localhost:9443", true},
		{"https://LOCALHOST", "localhost:9443", true},
		{"https://[::1]:8443", "[::1]:9443", true},
		{"http://localhost:8443", "localhost:9443", false},
		{"https://evil.example", "localhost:9443", false},
		{"null", "localhost:9443", false},
	} {
		if got := sameHost(tt.origin, tt.host); got != tt.want {
			t.Errorf("sameHost(%q, %q) = %v, want %v", tt.origin, tt.host, got, tt.want)
		}
	}
}
