package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// NodeMemory is one spawned node's memory, read from /proc/<pid>/status (Linux only).
type NodeMemory struct {
	ID string `json:"id"`
	// RSSMB is the resident set when read; PeakRSSMB the most it has been (VmHWM) since this
	// process of the node started.
	RSSMB     float64 `json:"rss_mb"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// AnonMB is the anonymous part of RSS (Go heap, stacks, runtime): the memory the node itself
	// holds. FileMB is the file-backed part: mostly the mapped pages of the bbolt files, which are the
	// kernel's page cache and are given back under memory pressure (a memory limit evicts them first).
	AnonMB float64 `json:"rss_anon_mb"`
	FileMB float64 `json:"rss_file_mb"`
}

// readMemory returns pid's resident set in MiB: current, peak, anonymous and file-backed.
func readMemory(pid int) (m NodeMemory, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		var dst *float64
		switch k {
		case "VmRSS":
			dst = &m.RSSMB
		case "VmHWM":
			dst = &m.PeakRSSMB
		case "RssAnon":
			dst = &m.AnonMB
		case "RssFile":
			dst = &m.FileMB
		}
		if !ok || dst == nil {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return m, fmt.Errorf("parse %s %q: %w", k, v, err)
		}
		*dst = kb / 1024
	}
	return m, sc.Err()
}

// memory reads every running node's memory; nodes whose PID is unknown are left out.
func (c *spawnedCluster) memory() []NodeMemory {
	var out []NodeMemory
	for _, n := range c.running() {
		p, ok := n.proc.(interface{ PID() int })
		if !ok {
			continue
		}
		m, err := readMemory(p.PID())
		if err != nil {
			c.log.Debug("read node memory", "id", n.ID, "error", err)
			continue
		}
		m.ID = n.ID
		out = append(out, m)
	}
	return out
}

// procCPU returns the CPU time (user + system) pid has used, from /proc/<pid>/stat (Linux).
// Its unit is USER_HZ ticks, 100 per second on every Linux the tool runs on.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	// After the name: state(3) ... utime(14) stime(15), i.e. f[11] and f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// cpu reads every running node's CPU time so far, by node ID.
func (c *spawnedCluster) cpu() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, n := range c.running() {
		p, ok := n.proc.(interface{ PID() int })
		if !ok {
			continue
		}
		if d, err := procCPU(p.PID()); err == nil {
			out[n.ID] = d
		}
	}
	return out
}
