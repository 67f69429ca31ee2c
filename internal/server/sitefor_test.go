package server

import (
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/config"
)

func TestSiteFor(t *testing.T) {
	site := func(name string, names ...string) *siteRuntime {
		return &siteRuntime{name: name, cfg: config.Site{Name: name, ServerNames: names}}
	}
	var l listenerRuntime
	l.serve([]*siteRuntime{site("default", "example.com"), site("wild", "*.example.org"), site("exact", "www.example.org")})
	for _, tt := range []struct{ sni, want string }{
		{"example.com", "default"},
		{"EXAMPLE.com.", "default"},
		{"a.example.org", "wild"},
		{"www.example.org", "exact"},
		{"a.b.example.org", "default"}, // a wildcard covers one label (RFC 6125 6.4.3)
		{"", "default"},                // no SNI: clients connecting by IP
		{"unknown.test", "default"},
	} {
		if got := l.siteFor(tt.sni); got == nil || got.name != tt.want {
			t.Errorf("siteFor(%q) = %v, want %s", tt.sni, got, tt.want)
		}
	}
	// A stream listener has one site, which serves every name.
	var stream listenerRuntime
	stream.serve([]*siteRuntime{site("dot", "dns.example.net")})
	if got := stream.siteFor("other.example"); got == nil || got.name != "dot" {
		t.Errorf("stream listener chose %v for another name", got)
	}
}

func TestShutdownTimeoutFollowsConfig(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	if got := ts.srv.ShutdownTimeout(); got != defaultShutdown {
		t.Errorf("default drain deadline %v, want %v", got, defaultShutdown)
	}
	if err := ts.srv.Reload(loadConfig(t, ts.dir, baseConfig+"[timeouts]\nshutdown = \"3s\"\n"+inspectSite)); err != nil {
		t.Fatal(err)
	}
	if got := ts.srv.ShutdownTimeout(); got != 3*time.Second {
		t.Errorf("after reload the drain deadline is %v, want 3s", got)
	}
}
