package bench

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data and the metadata needed to read it back (its size), as the Raft
// log store's commit does.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
