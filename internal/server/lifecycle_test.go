package server

import (
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/config"
)

func TestShutdownTimeoutFollowsConfig(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	if got := ts.srv.ShutdownTimeout(); got != config.DefaultShutdownTimeout {
		t.Errorf("default drain deadline %v, want %v", got, config.DefaultShutdownTimeout)
	}
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, baseConfig+"[timeouts]\nshutdown = \"3s\"\n"+inspectSite)); err != nil {
		t.Fatal(err)
	}
	if got := ts.srv.ShutdownTimeout(); got != 3*time.Second {
		t.Errorf("after reload the drain deadline is %v, want 3s", got)
	}
}
