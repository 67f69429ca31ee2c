//go:build !unix

package peers

import "os/exec"

// inOwnProcessGroup does nothing where there are no process groups; the
// peers run on Linux, and tests needing them skip elsewhere.
func inOwnProcessGroup(*exec.Cmd) {}

// killProcessGroup kills cmd's process only.
func killProcessGroup(cmd *exec.Cmd) error { return cmd.Process.Kill() }
