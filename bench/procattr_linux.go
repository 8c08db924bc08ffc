package bench

import "syscall"

// childProcAttr puts a node in its own process group, so a terminal's Ctrl-C reaches only
// the tool, which then kills its nodes in order; Pdeathsig kills them should the tool itself
// die without cleaning up.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
