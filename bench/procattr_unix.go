//go:build unix

package bench

import (
	"os"
	"syscall"
)

// killGroup SIGKILLs the process group the child leads (the child and anything it started).
func killGroup(p *os.Process) error {
	return syscall.Kill(-p.Pid, syscall.SIGKILL)
}
