//go:build unix

package peers

import (
	"os/exec"
	"syscall"
)

// inOwnProcessGroup makes cmd lead a process group of its own (Start).
func inOwnProcessGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// killProcessGroup kills cmd's process group with SIGKILL.
func killProcessGroup(cmd *exec.Cmd) error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
