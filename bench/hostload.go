package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// HostLoad describes how busy the machine was: figures from a box shared with builds or
// tests are worth less, and the report says so rather than hiding it.
type HostLoad struct {
	CPUs int `json:"cpus"`
	// Load1 is the 1-minute load average (Linux /proc/loadavg; 0 elsewhere).
	Load1 float64 `json:"load1"`
	// ToolCPU is the CPU the benchmark process itself used during the measurement, in cores
	// (1 = one core busy throughout): on one machine the tool competes with the nodes.
	ToolCPU float64 `json:"tool_cpu"`
}

func readHostLoad() HostLoad {
	h := HostLoad{CPUs: runtime.NumCPU()}
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return h
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		h.Load1, _ = strconv.ParseFloat(f[0], 64)
	}
	return h
}
