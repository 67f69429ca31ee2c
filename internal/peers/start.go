package peers

import (
	"os/exec"
	"testing"
	"time"
)

// Start starts cmd in a process group of its own and returns the channel
// its Wait result arrives on (buffered, one value). The whole group, which
// includes the helpers a browser forks, is killed when cmd's context ends
// and when t's test ends; cmd's output pipes are not waited for more than
// 5 s after that, so a helper that keeps stdout open cannot hang the test.
// what names the peer in the failure when it cannot start.
func Start(t testing.TB, cmd *exec.Cmd, what string) <-chan error {
	t.Helper()
	inOwnProcessGroup(cmd)
	if cmd.Cancel != nil { // exec.CommandContext: kill the group, not only cmd
		cmd.Cancel = func() error { return killProcessGroup(cmd) }
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("failed to start %s: %v", what, err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		killProcessGroup(cmd)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit 10 s after it was killed", what, cmd.Process.Pid)
		}
	})
	return done
}
