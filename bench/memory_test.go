package bench

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestProcReaders(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	m, err := readMemory(os.Getpid())
	if err != nil || m.RSSMB <= 0 || m.PeakRSSMB < m.RSSMB || m.AnonMB <= 0 || m.FileMB <= 0 || m.AnonMB+m.FileMB > m.RSSMB+0.01 {
		t.Errorf("readMemory(self) = %+v, %v; want 0 < rss <= peak, anon and file > 0, anon + file <= rss", m, err)
	}
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Errorf("procCPU(self): %v", err)
	}
}

func TestAddNodeCPU(t *testing.T) {
	r := RunResult{Ops: []OpResult{{Op: OpWrite, Count: 1000}}}
	before := map[string]time.Duration{"n1": time.Second, "n2": 2 * time.Second, "n3": 5 * time.Second}
	after := map[string]time.Duration{"n1": 3 * time.Second, "n2": 3 * time.Second, "n3": time.Second} // n3 restarted
	r.addNodeCPU(before, after, 2*time.Second)
	if got, want := r.NodeCPU["n1"], 1.0; got != want {
		t.Errorf("n1 cores = %v, want %v", got, want)
	}
	if _, ok := r.NodeCPU["n3"]; ok {
		t.Error("restarted n3 has a CPU figure, want none")
	}
	if got, want := r.CPUPerOpUs, 3000.0; got != want { // (2s + 1s) / 1000 requests
		t.Errorf("cpu per op = %vµs, want %vµs", got, want)
	}
}
