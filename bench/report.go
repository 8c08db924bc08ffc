package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of Run: the setup, the baselines and one RunResult per client count.
type Report struct {
	Started     time.Time   `json:"started"`
	Nodes       []string    `json:"nodes"`
	Targets     []string    `json:"targets"`
	Leader      string      `json:"leader"`
	Target      string      `json:"target"`
	Workload    string      `json:"workload"`
	Consistency string      `json:"consistency,omitempty"`
	ReadRatio   float64     `json:"read_ratio,omitempty"`
	Keys        int         `json:"keys"`
	KeySize     int         `json:"key_size"`
	ValueSize   int         `json:"value_size"`
	Seed        uint64      `json:"seed"`
	Baselines   *Baselines  `json:"baselines,omitempty"`
	Runs        []RunResult `json:"runs"`
	// Memory is each node's memory after the runs, when the tool spawned the nodes.
	Memory []NodeMemory `json:"memory,omitempty"`
}

// RunResult is one measurement at one client count.
type RunResult struct {
	Clients int        `json:"clients"`
	Conns   int        `json:"conns"`
	Seconds float64    `json:"seconds"`
	PerSec  float64    `json:"per_sec"` // successful requests of every kind per second
	Errors  int64      `json:"errors"`
	Ops     []OpResult `json:"ops"`
	// Host is the machine's load when the measurement ended (the 1-minute average covers it).
	Host HostLoad `json:"host"`
	// NodeCPU is the cores each node used on average during the measurement, and CPUPerOpUs
	// the nodes' CPU time summed, per successful request: a cost that a busy machine distorts
	// far less than throughput. Known only when the tool spawned the nodes.
	NodeCPU    map[string]float64 `json:"node_cpu,omitempty"`
	CPUPerOpUs float64            `json:"cpu_per_op_us,omitempty"`
}

// addNodeCPU fills NodeCPU and CPUPerOpUs from CPU times read before and after the run.
func (r *RunResult) addNodeCPU(before, after map[string]time.Duration, elapsed time.Duration) {
	var total time.Duration
	r.NodeCPU = map[string]float64{}
	for id, a := range after {
		b, ok := before[id]
		if !ok || a < b {
			continue // restarted or new during the run
		}
		r.NodeCPU[id] = (a - b).Seconds() / elapsed.Seconds()
		total += a - b
	}
	var ok int64
	for _, op := range r.Ops {
		ok += op.Count
	}
	if ok > 0 {
		r.CPUPerOpUs = float64(total.Microseconds()) / float64(ok)
	}
}

// OpResult is one operation kind within a run.
type OpResult struct {
	Op          string           `json:"op"`
	Count       int64            `json:"count"` // successful requests
	PerSec      float64          `json:"per_sec"`
	Latency     Latency          `json:"latency"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	Misses      int64            `json:"misses,omitempty"`       // reads of absent keys without prefill
	CASMismatch int64            `json:"cas_mismatch,omitempty"` // CAS answered false
	Ratios      *Ratios          `json:"ratios,omitempty"`
}

// Ratios relate an operation's figures to the baselines of the same run.
type Ratios struct {
	// PerFsync is writes per second over fsyncs per second: above 1 means batching (group
	// commit) pays for more than one write per disk flush.
	PerFsync float64 `json:"per_fsync,omitempty"`
	// P50OverFloor is a write's median latency over (fsync median + 1-client loopback HTTP
	// median): the target for one client is 1.
	P50OverFloor float64 `json:"p50_over_floor,omitempty"`
	// PerSecOfHTTP is throughput over the loopback HTTP floor's at the same client count.
	PerSecOfHTTP float64 `json:"per_sec_of_http,omitempty"`
	// P99OverHTTP is p99 latency over the loopback HTTP floor's p99 at the same client count.
	P99OverHTTP float64 `json:"p99_over_http,omitempty"`
}

func newReport(cfg Config, targets []string, leader string) *Report {
	r := &Report{
		Started:   time.Now().UTC(),
		Nodes:     cfg.Nodes,
		Targets:   targets,
		Leader:    leader,
		Target:    cfg.Target,
		Workload:  cfg.Workload,
		Keys:      cfg.Keys,
		KeySize:   cfg.KeySize,
		ValueSize: cfg.ValueSize,
		Seed:      cfg.Seed,
	}
	if cfg.Workload != WorkloadPut {
		r.Consistency = cfg.Consistency
	}
	if cfg.Workload == WorkloadMixed {
		r.ReadRatio = cfg.ReadRatio
	}
	return r
}

func newRunResult(cfg Config, clients int, elapsed time.Duration, ops map[string]*opStats) RunResult {
	res := RunResult{Clients: clients, Conns: cfg.Conns, Seconds: elapsed.Seconds(), Host: readHostLoad()}
	var ok int64
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		s := ops[op]
		n := s.hist.TotalCount()
		ok += n
		for _, v := range s.errors {
			res.Errors += v
		}
		res.Ops = append(res.Ops, OpResult{
			Op:          op,
			Count:       n,
			PerSec:      float64(n) / elapsed.Seconds(),
			Latency:     summarize(s.hist),
			Errors:      cloneErrors(s.errors),
			Misses:      s.misses,
			CASMismatch: s.casNo,
		})
	}
	res.PerSec = float64(ok) / elapsed.Seconds()
	return res
}

// addRun appends res, filling its ratios from the baselines.
func (r *Report) addRun(res RunResult) {
	if b := r.Baselines; b != nil {
		floor := b.forClients(res.Clients)
		one := b.forClients(1)
		for i := range res.Ops {
			op := &res.Ops[i]
			if op.Count == 0 {
				continue
			}
			rt := &Ratios{}
			if op.Op != OpRead && b.Fsync != nil && b.Fsync.PerSec > 0 {
				rt.PerFsync = op.PerSec / b.Fsync.PerSec
				if one != nil {
					rt.P50OverFloor = ratio(op.Latency.P50, b.Fsync.Latency.P50+one.Latency.P50)
				}
			}
			if floor != nil {
				rt.PerSecOfHTTP = ratio(op.PerSec, floor.PerSec)
				rt.P99OverHTTP = ratio(op.Latency.P99, floor.Latency.P99)
			}
			op.Ratios = rt
		}
	}
	r.Runs = append(r.Runs, res)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	mode := ""
	if r.Consistency != "" {
		mode = " consistency=" + r.Consistency
	}
	if r.Workload == WorkloadMixed {
		mode += fmt.Sprintf(" read-ratio=%g", r.ReadRatio)
	}
	fmt.Fprintf(w, "workload=%s%s target=%s (%s) leader=%s keys=%d key-size=%d value-size=%d seed=%d\n",
		r.Workload, mode, r.Target, strings.Join(r.Targets, ","), r.Leader, r.Keys, r.KeySize, r.ValueSize, r.Seed)
	if b := r.Baselines; b != nil {
		fmt.Fprintln(w, "\nbaselines (same run; best round shown):")
		fmt.Fprintln(tw, "\tbaseline\tclients\tops/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tevery round ops/s\t")
		if f := b.Fsync; f != nil {
			fmt.Fprintf(tw, "\tfsync %dB+fdatasync %s\t1\t%.0f\t%s\t%s\t\n", f.BlockSize, f.Dir, f.PerSec, latCols(f.Latency), fmtRounds(f.Rounds))
		}
		for _, h := range b.HTTP {
			fmt.Fprintf(tw, "\tloopback http %s\t%d\t%.0f\t%s\t%s\t\n", h.Workload, h.Clients, h.PerSec, latCols(h.Latency), fmtRounds(h.Rounds))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nresults:")
	fmt.Fprintln(tw, "\top\tclients\tok\tops/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\t/fsync\tp50/floor\tof http\tp99/http\tload1\ttool cpu\t")
	for _, run := range r.Runs {
		for _, op := range run.Ops {
			var errs int64
			for _, v := range op.Errors {
				errs += v
			}
			rt := "\t\t\t"
			if x := op.Ratios; x != nil {
				rt = fmt.Sprintf("%s\t%s\t%s\t%s", fmtRatio(x.PerFsync), fmtRatio(x.P50OverFloor), fmtPct(x.PerSecOfHTTP), fmtRatio(x.P99OverHTTP))
			}
			fmt.Fprintf(tw, "\t%s\t%d\t%d\t%.0f\t%s\t%d\t%s\t%.1f/%d\t%.2f\t\n", op.Op, run.Clients, op.Count, op.PerSec, latCols(op.Latency), errs, rt, run.Host.Load1, run.Host.CPUs, run.Host.ToolCPU)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, run := range r.Runs {
		if len(run.NodeCPU) == 0 {
			continue
		}
		var parts []string
		for _, id := range slices.Sorted(maps.Keys(run.NodeCPU)) {
			parts = append(parts, fmt.Sprintf("%s %.2f", id, run.NodeCPU[id]))
		}
		fmt.Fprintf(w, "c=%d: node cpu (cores) %s; %.0f µs of node CPU per request\n", run.Clients, strings.Join(parts, ", "), run.CPUPerOpUs)
	}
	writeMemory(w, r.Memory)
	for _, run := range r.Runs {
		for _, op := range run.Ops {
			if len(op.Errors) == 0 && op.CASMismatch == 0 && op.Misses == 0 {
				continue
			}
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(op.Errors)) {
				parts = append(parts, fmt.Sprintf("%s: %d", k, op.Errors[k]))
			}
			if op.CASMismatch > 0 {
				parts = append(parts, fmt.Sprintf("cas false (not an error): %d", op.CASMismatch))
			}
			if op.Misses > 0 {
				parts = append(parts, fmt.Sprintf("404 misses (not an error): %d", op.Misses))
			}
			fmt.Fprintf(w, "%s c=%d: %s\n", op.Op, run.Clients, strings.Join(parts, ", "))
		}
	}
	fmt.Fprintln(w, "\n/fsync: ops/s per fsync/s; p50/floor: p50 over (fsync p50 + 1-client loopback p50); of http: ops/s as a share of the loopback floor at the same clients; p99/http: p99 over the floor's p99;\nload1: the host's 1-minute load average / CPUs at the end of the measurement (above the CPU count, other work shared the machine);\ntool cpu: cores the benchmark process itself used during the measurement")
	return nil
}

func fmtRounds(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.0f", r)
	}
	return strings.Join(parts, " ")
}

func latCols(l Latency) string {
	return fmt.Sprintf("%.3f\t%.3f\t%.3f\t%.3f\t%.3f", l.P50, l.P90, l.P99, l.P999, l.Max)
}

func fmtRatio(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x)
}

func fmtPct(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteTable writes the failover report for people.
func (r *FailoverReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "failover: %d nodes, %d writers, %d leader kills (SIGKILL)\n\n", r.Nodes, r.Clients, len(r.Kills))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tkill\tkilled\tnew leader\tnew leader ms\tkill->write ms\tunavailable ms\tcatch-up ms\terrors in window\t")
	for _, k := range r.Kills {
		var parts []string
		for _, e := range slices.Sorted(maps.Keys(k.Errors)) {
			parts = append(parts, fmt.Sprintf("%s: %d", e, k.Errors[e]))
		}
		fmt.Fprintf(tw, "\t%d\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t\n", k.Kill, k.Killed, k.NewLeader,
			k.NewLeaderMs, k.KillToWriteMs, k.UnavailableMs, k.CatchupMs, strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "\tmedian\t\t\t%.0f\t%.0f\t%.0f\t%.0f\t\t\n", r.NewLeader.Median, r.KillToWrite.Median, r.Unavailable.Median, r.Catchup.Median)
	fmt.Fprintf(tw, "\tworst\t\t\t%.0f\t%.0f\t%.0f\t%.0f\t\t\n", r.NewLeader.Worst, r.KillToWrite.Worst, r.Unavailable.Worst, r.Catchup.Worst)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrite load over the whole run: %.0f writes/s, %d errors; host load1 %.1f on %d CPUs\n", r.Load.PerSec, r.Load.Errors, r.Load.Host.Load1, r.Load.Host.CPUs)
	for _, op := range r.Load.Ops {
		fmt.Fprintf(w, "  %s: p50 %.3fms p99 %.3fms p99.9 %.3fms max %.3fms\n", op.Op, op.Latency.P50, op.Latency.P99, op.Latency.P999, op.Latency.Max)
	}
	writeMemory(w, r.Memory)
	if r.Dir != "" {
		fmt.Fprintf(w, "node data and logs: %s\n", r.Dir)
	}
	fmt.Fprintln(w, "\nunavailable: last write to succeed before the kill -> first write issued after it to succeed; kill->write: SIGKILL -> that write")
	return nil
}

// WriteTable writes the catch-up report for people.
func (r *CatchupReport) WriteTable(w io.Writer) error {
	var ok int64
	var errs []string
	for _, op := range r.Load.Ops {
		ok += op.Count
		for _, k := range slices.Sorted(maps.Keys(op.Errors)) {
			errs = append(errs, fmt.Sprintf("%s: %d", k, op.Errors[k]))
		}
	}
	fmt.Fprintf(w, "catch-up: %d nodes; follower %s down while %d of %d writes succeeded (%.0f writes/s; host load1 %.1f on %d CPUs)\n",
		r.Nodes, r.Follower, ok, r.Writes, r.Load.PerSec, r.Load.Host.Load1, r.Load.Host.CPUs)
	if len(errs) > 0 {
		fmt.Fprintf(w, "write errors: %s\n", strings.Join(errs, ", "))
	}
	if r.Load.CPUPerOpUs > 0 {
		fmt.Fprintf(w, "node CPU per write: %.0f µs (two nodes up)\n", r.Load.CPUPerOpUs)
	}
	fmt.Fprintf(w, "restart -> answering: %.0f ms (applied index %d)\n", r.AnswerMs, r.StartIndex)
	fmt.Fprintf(w, "restart -> applied index >= leader's commit index %d: %.0f ms\n", r.TargetIndex, r.CatchupMs)
	writeMemory(w, r.Memory)
	if r.Dir != "" {
		fmt.Fprintf(w, "node data and logs: %s\n", r.Dir)
	}
	return nil
}

func writeMemory(w io.Writer, ms []NodeMemory) {
	if len(ms) == 0 {
		return
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s rss %.0f MiB (peak %.0f; anon %.0f, file %.0f)", m.ID, m.RSSMB, m.PeakRSSMB, m.AnonMB, m.FileMB)
	}
	fmt.Fprintf(w, "node memory: %s\n", strings.Join(parts, ", "))
}
