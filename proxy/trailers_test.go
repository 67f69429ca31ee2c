package proxy

import "testing"

// TestDropsTrailer: which client trailer fields never reach an upstream.
func TestDropsTrailer(t *testing.T) {
	p := newHeaderPolicy(HeaderNames{Group: "X-TLS-Group"}, false)
	tests := []struct {
		name  string
		drops bool
	}{
		{"X-Checksum", false},
		{"Grpc-Status", false},
		{"Server-Timing", false},
		// RFC 9110 Section 6.5.1.
		{"Content-Length", true},
		{"Transfer-Encoding", true},
		{"Host", true},
		{"Authorization", true},
		{"Proxy-Authorization", true},
		{"Cookie", true},
		{"Content-Type", true},
		{"Content-Encoding", true},
		{"If-None-Match", true},
		{"Range", true},
		{"Expect", true},
		{"Te", true},
		{"Trailer", true},
		{"Upgrade", true},
		{"Connection", true},
		// pqedge's own and the client-address headers, any spelling.
		{"PQEdge-TLS-PQ", true},
		{"pqedge_tls_signature", true},
		{"X-TLS-Group", true},
		{"X_Forwarded_For", true},
		{"X-Forwarded-Port", true},
		{"X-Real-IP", true},
		{"Forwarded", true},
		{"X-Original-URL", true},
		// Names the header policy refuses.
		{"X_Custom", true},
		{"X.Custom", true},
	}
	for _, tt := range tests {
		if got := p.dropsTrailer(tt.name); got != tt.drops {
			t.Errorf("dropsTrailer(%q) = %v, want %v", tt.name, got, tt.drops)
		}
	}
}
