//go:build unix && !linux

package bench

import "syscall"

// childProcAttr puts a node in its own process group, so a terminal's Ctrl-C reaches only
// the tool, which then kills its nodes in order.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
