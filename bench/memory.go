package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// NodeMemory is one spawned node's memory, read from /proc/<pid>/status (Linux only).
type NodeMemory struct {
	ID string `json:"id"`
	// RSSMB is the resident set when read; PeakRSSMB the most it has been (VmHWM) since this
	// process of the node started.
	RSSMB     float64 `json:"rss_mb"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
}

// readMemory returns pid's current and peak resident set in MiB.
func readMemory(pid int) (rss, peak float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s %q: %w", k, v, err)
		}
		if k == "VmRSS" {
			rss = kb / 1024
		} else {
			peak = kb / 1024
		}
	}
	return rss, peak, sc.Err()
}

// memory reads every running node's memory; nodes whose PID is unknown are left out.
func (c *spawnedCluster) memory() []NodeMemory {
	var out []NodeMemory
	for _, n := range c.running() {
		p, ok := n.proc.(interface{ PID() int })
		if !ok {
			continue
		}
		rss, peak, err := readMemory(p.PID())
		if err != nil {
			c.log.Debug("read node memory", "id", n.ID, "error", err)
			continue
		}
		out = append(out, NodeMemory{ID: n.ID, RSSMB: rss, PeakRSSMB: peak})
	}
	return out
}
