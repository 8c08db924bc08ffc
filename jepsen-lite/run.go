package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"math/rand/v2"
)

// Config describes one run. Only cmd/jepsen-lite reads flags; it fills this.
type Config struct {
	// Binary is the raftkv executable to start (ignored with Endpoints).
	Binary string
	// Nodes is the cluster size: 3 or 5.
	Nodes int
	// Workload is "register" or "set".
	Workload string
	// Faults are nemesis classes (see AllFaults); empty means none.
	Faults []string
	// TimeLimit is how long clients run (faults stop with them).
	TimeLimit time.Duration
	// Seed fixes every random choice of the harness (not the OS's timing).
	Seed uint64
	// Concurrency is the number of client workers.
	Concurrency int
	// Dir is the run directory; created if absent.
	Dir string
	// Endpoints, when set, target an already-running cluster by HTTP
	// address ("id=ip:port" or "ip:port"): no process or network faults.
	Endpoints []string
	// Net is how network faults are made: "netns" (a namespace per node,
	// iptables; needs root on Linux), "proxy" (nodes on 127.0.0.1, every
	// node-to-node link through a harness proxy; no loss faults) or "auto"
	// (netns when available, else proxy).
	Net string
	// OpTimeout bounds one client request.
	OpTimeout time.Duration
	// FaultMin, FaultMax, Heal: the nemesis windows.
	FaultMin, FaultMax, Heal time.Duration
	// Combine lets the nemesis overlap two fault classes (soaks).
	Combine bool
	// Partitions restricts partition shapes (see NemesisConfig).
	Partitions []string
	// CheckTimeout bounds porcupine's search per key.
	CheckTimeout time.Duration
	// ServerArgs are appended to every `raftkv server` command. The default
	// snapshots often and keeps a short log tail, so restarts restore from
	// snapshots and a wiped node catches up by snapshot install.
	ServerArgs []string
	// Replay is the command line that reproduces this run, for the report.
	Replay string
	// Out receives the human report; Status a live status line (nil = none),
	// redrawn in place when StatusTTY, else printed every 10s.
	Out, Status io.Writer
	StatusTTY   bool
	// Logger receives the harness's own log; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a 3-node register run with no faults for 60s.
func DefaultConfig() Config {
	return Config{
		Nodes: 3, Workload: "register", TimeLimit: 60 * time.Second, Seed: 1, Concurrency: 10,
		Net: "auto", OpTimeout: 2 * time.Second,
		FaultMin: 5 * time.Second, FaultMax: 10 * time.Second, Heal: 5 * time.Second,
		CheckTimeout: 60 * time.Second, Out: io.Discard,
		ServerArgs: []string{"--snapshot-threshold=500", "--snapshot-interval=2s", "--trailing-logs=200"},
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case len(c.Endpoints) == 0 && c.Nodes != 3 && c.Nodes != 5:
		return fmt.Errorf("nodes must be 3 or 5, not %d", c.Nodes)
	case c.Workload != "register" && c.Workload != "set":
		return fmt.Errorf("workload must be register or set, not %q", c.Workload)
	case len(c.Endpoints) == 0 && c.Binary == "":
		return errors.New("binary is required unless targeting endpoints")
	case c.TimeLimit <= 0 || c.Concurrency <= 0 || c.OpTimeout <= 0:
		return errors.New("time limit, concurrency and op timeout must be positive")
	case c.FaultMin <= 0 || c.FaultMax < c.FaultMin:
		return errors.New("fault window must satisfy 0 < min <= max")
	case c.Net != "auto" && c.Net != "netns" && c.Net != "proxy":
		return fmt.Errorf("net must be auto, netns or proxy, not %q", c.Net)
	case c.Dir == "":
		return errors.New("run dir is required")
	}
	for _, f := range c.Faults {
		if !slices.Contains(AllFaults, f) {
			return fmt.Errorf("unknown fault %q (known: %s)", f, strings.Join(AllFaults, ","))
		}
	}
	for _, p := range c.Partitions {
		if !slices.Contains(PartitionShapes, p) {
			return fmt.Errorf("unknown partition shape %q (known: %s)", p, strings.Join(PartitionShapes, ","))
		}
		if (p == "ring" || p == "bridge") && c.Nodes < 5 {
			return fmt.Errorf("partition shape %s needs 5 nodes", p)
		}
	}
	if len(c.Endpoints) > 0 && len(c.Faults) > 0 {
		return errors.New("faults need a cluster the harness starts; none are possible against --endpoints")
	}
	return nil
}

// ErrHarness marks a bug in the harness itself (exit 3), as opposed to
// anything the store did.
var ErrHarness = errors.New("harness bug")

// Result is a run's outcome.
type Result struct {
	Verdict Verdict
	Checks  []CheckResult
	Dir     string
	Ops     int
	Notes   []string // e.g. faults skipped and why
}

// Run performs one run: start (or reach) the cluster, drive it under faults,
// heal, check, and write the report. A non-nil error is a harness failure
// (exit 3), distinct from an invalid verdict.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("run dir: %w", err)
	}
	res := Result{Dir: cfg.Dir}
	fmt.Fprintf(cfg.Out, "jepsen-lite: seed %d, %s workload, faults [%s], %d nodes, %s; run dir %s\n  replay: %s\n",
		cfg.Seed, cfg.Workload, strings.Join(cfg.Faults, ","), cfg.Nodes, cfg.TimeLimit, cfg.Dir, cfg.Replay)

	// The cluster.
	var clients []*Client
	var cluster *Cluster
	var network *Network
	if len(cfg.Endpoints) == 0 {
		useNS := cfg.Net == "netns"
		if cfg.Net == "auto" {
			if err := NetnsAvailable(); err != nil {
				log.Info("network namespaces unavailable: partitions go through proxies", "why", err)
			} else {
				useNS = true
			}
		}
		cfg.Net = "proxy" // results.json records the mode used
		if useNS {
			cfg.Net = "netns"
		}
		if !useNS && slices.Contains(cfg.Faults, FaultLoss) {
			res.Notes = append(res.Notes, "loss faults skipped: proxy mode (packet loss needs network namespaces: root on Linux)")
		}
		if useNS {
			nw, err := NewNetwork(ctx, cfg.Nodes, log)
			if err != nil {
				return res, fmt.Errorf("network: %w", err)
			}
			defer nw.Close()
			network = nw
		}
		c, err := NewCluster(ClusterConfig{Binary: cfg.Binary, Nodes: cfg.Nodes, Dir: cfg.Dir, Net: network, Proxy: !useNS, ExtraArgs: cfg.ServerArgs, Logger: log})
		if err != nil {
			return res, err
		}
		cluster = c
		defer c.Close()
		if err := c.Boot(ctx, 60*time.Second); err != nil {
			return res, fmt.Errorf("boot: %w (logs in %s)", err, filepath.Join(cfg.Dir, "logs"))
		}
		for _, n := range c.Nodes {
			clients = append(clients, NewClient(n.ID, n.HTTPAddr(), cfg.OpTimeout))
		}
	} else {
		for _, e := range cfg.Endpoints {
			id, addr, ok := strings.Cut(e, "=")
			if !ok {
				id, addr = e, e
			}
			clients = append(clients, NewClient(id, addr, cfg.OpTimeout))
		}
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	hist, err := NewHistory(filepath.Join(cfg.Dir, "history.jsonl"))
	if err != nil {
		return res, err
	}
	defer hist.Close()
	prefix := fmt.Sprintf("jl/%d-%d/", cfg.Seed, time.Now().UnixNano()%1e6)
	var wl Workload
	if cfg.Workload == "set" {
		wl = NewSetWorkload(prefix)
	} else {
		wl = NewRegisterWorkload(prefix)
	}

	// Drive.
	runCtx, stopRun := context.WithTimeout(ctx, cfg.TimeLimit)
	defer stopRun()
	bgCtx, stopBG := context.WithCancel(ctx)
	defer stopBG()
	var bg sync.WaitGroup
	if cluster != nil {
		bg.Add(1)
		go func() { defer bg.Done(); sampleLeaders(bgCtx, cluster, hist) }()
	}
	var nem *Nemesis
	nemDone := make(chan error, 1)
	if cluster != nil && len(cfg.Faults) > 0 {
		faults := cfg.Faults
		var nf NetFaults // an untyped nil unless set: see NewNemesis
		switch {
		case network != nil:
			nf = network
		case cluster.Proxies != nil:
			nf = cluster.Proxies
			if slices.Contains(faults, FaultLoss) {
				faults = slices.DeleteFunc(slices.Clone(faults), func(f string) bool { return f == FaultLoss })
				fmt.Fprintln(cfg.Out, "  NOTE: loss faults skipped: partitions go through proxies here, which cannot drop packets (run as root on Linux with iproute2 and iptables for loss)")
			}
		}
		nem = NewNemesis(NemesisConfig{Faults: faults, FaultMin: cfg.FaultMin, FaultMax: cfg.FaultMax, Heal: cfg.Heal, Combine: cfg.Combine, Partitions: cfg.Partitions},
			cluster, nf, hist, cfg.Seed, log)
		go func() {
			// A harness bug must not leave nodes and namespaces behind:
			// turn a panic into a harness error so the defers clean up.
			defer func() {
				if r := recover(); r != nil {
					nemDone <- fmt.Errorf("%w: nemesis panic: %v\n%s", ErrHarness, r, debug.Stack())
				}
			}()
			nemDone <- nem.Run(runCtx)
		}()
	} else {
		nemDone <- nil
	}
	if cfg.Status != nil {
		bg.Add(1)
		go func() { defer bg.Done(); statusLine(bgCtx, cfg.Status, cfg.StatusTTY, hist, cfg.TimeLimit) }()
	}
	var procs atomic.Int64
	procs.Store(int64(cfg.Concurrency))
	var wg sync.WaitGroup
	for i := 0; i < cfg.Concurrency; i++ {
		w := &worker{id: i, process: i, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i))), clients: clients, hist: hist, procs: &procs, opTO: cfg.OpTimeout}
		wg.Add(1)
		go func() { defer wg.Done(); wl.Run(runCtx, w) }()
	}
	wg.Wait()
	healErr := <-nemDone
	stopBG()
	bg.Wait()
	if errors.Is(healErr, ErrHarness) {
		return res, healErr
	}
	if healErr != nil {
		res.Notes = append(res.Notes, "healing failed: "+healErr.Error())
	}
	if cfg.Status != nil && cfg.StatusTTY {
		fmt.Fprintln(cfg.Status)
	}

	// Check.
	var checks []CheckResult
	if cluster != nil && healErr == nil {
		if err := cluster.WaitReady(ctx, 30*time.Second); err != nil {
			res.Notes = append(res.Notes, "cluster not ready after healing: "+err.Error())
		}
	}
	wl.Final(ctx, clients, hist, cfg.OpTimeout)
	conv := CheckConvergence(ctx, clients, 30*time.Second)
	ops := hist.Ops()
	res.Ops = len(ops)
	lin := LinearizableChecker{Timeout: cfg.CheckTimeout, Dir: cfg.Dir, Nemesis: hist.Nemesis(), Leaders: hist.Leaders()}
	checks = append(checks, wl.Check(ops, lin)...)
	checks = append(checks, conv)
	res.Checks = checks
	res.Verdict = Valid
	for _, c := range checks {
		res.Verdict = worse(res.Verdict, c.Verdict)
	}
	if ctx.Err() != nil {
		// An interrupted run proves nothing beyond what it found wrong.
		res.Notes = append(res.Notes, "run interrupted: "+ctx.Err().Error())
		res.Verdict = worse(res.Verdict, Unknown)
	}
	if cluster != nil {
		cluster.Close()
		if res.Verdict == Valid {
			os.RemoveAll(filepath.Join(cfg.Dir, "data")) // kept only on failure
		}
	}
	hist.Close()
	rep := &Report{Config: cfg, Result: res, Ops: ops, Nemesis: hist.Nemesis(), Leaders: hist.Leaders(), GitCommit: gitCommit(cfg.Binary)}
	if nem != nil {
		rep.FaultCounts = nem.Count
	}
	if err := rep.Write(); err != nil {
		return res, fmt.Errorf("write report: %w", err)
	}
	rep.Print(cfg.Out)
	return res, nil
}

// sampleLeaders records every change of leader the harness sees.
func sampleLeaders(ctx context.Context, c *Cluster, h *History) {
	last := "?"
	for sleepCtx(ctx, 200*time.Millisecond) {
		l, s := c.Leader(ctx)
		id := ""
		if l != nil {
			id = l.ID
		}
		if id != last && ctx.Err() == nil {
			h.AddLeader(LeaderEvent{Leader: id, Term: s.Term})
			last = id
		}
	}
}

// statusLine prints a live one-line status every second.
func statusLine(ctx context.Context, w io.Writer, tty bool, h *History, limit time.Duration) {
	every, end := time.Second, "\r"
	if !tty {
		every, end = 10*time.Second, "\n"
	}
	for sleepCtx(ctx, every) {
		ops := h.Ops()
		var ok, fail, info int
		for _, o := range ops {
			switch o.Outcome {
			case OutcomeOK:
				ok++
			case OutcomeFail:
				fail++
			default:
				info++
			}
		}
		el := time.Duration(h.Now()).Truncate(time.Second)
		active := strings.Join(faultsAt(h.Nemesis(), h.Now()), " ")
		if active == "" {
			active = "none"
		}
		leader := "?"
		if ls := h.Leaders(); len(ls) > 0 {
			leader = ls[len(ls)-1].Leader
		}
		line := fmt.Sprintf("[%4s/%s] ops %6d  ok %6d  fail %5d  info %4d  leader %-3s faults %-40.40s", el, limit, len(ops), ok, fail, info, leader, active)
		if tty {
			fmt.Fprint(w, end+line)
		} else {
			fmt.Fprint(w, line+end)
		}
	}
}

// gitCommit is the commit of the working directory's repository, else of
// the one holding the binary, marked -dirty when it has local changes.
func gitCommit(binary string) string {
	for _, dir := range []string{".", filepath.Dir(binary)} {
		out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
		if err != nil {
			continue
		}
		c := strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			c += "-dirty"
		}
		return c
	}
	return "unknown"
}

// CheckHistory re-runs the workload's checkers on a recorded history.jsonl
// (convergence, which needs live nodes, is not re-checked). Failing keys'
// visualisations go to dir when set.
func CheckHistory(path, workload string, timeout time.Duration, dir string) (Verdict, []CheckResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return Unknown, nil, err
	}
	defer f.Close()
	ops, nem, leaders, err := LoadHistory(f)
	if err != nil {
		return Unknown, nil, err
	}
	var wl Workload = NewRegisterWorkload("")
	if workload == "set" {
		wl = NewSetWorkload("")
	}
	checks := wl.Check(ops, LinearizableChecker{Timeout: timeout, Dir: dir, Nemesis: nem, Leaders: leaders})
	v := Valid
	for _, c := range checks {
		v = worse(v, c.Verdict)
	}
	return v, checks, nil
}
