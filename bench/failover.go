package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// FailoverConfig describes a failover measurement: a spawned cluster under steady write load
// whose leader is SIGKILLed Kills times.
type FailoverConfig struct {
	Spawn SpawnConfig
	// Kills is how many times the leader is killed. Default 10.
	Kills int
	// Clients is the number of writers; writer i starts on node i mod N and moves to the next
	// node after a transport error, as a client library would. Default 8.
	Clients int
	// Keys, KeySize and ValueSize shape the writes. Defaults 10000, 16, 100.
	Keys, KeySize, ValueSize int
	// Timeout bounds one write. Default 2s: a write stuck on a dead leader gives up and the
	// writer moves on.
	Timeout time.Duration
	// Backoff is how long a writer waits after a failed write. Default 5ms.
	Backoff time.Duration
	// Settle is how long the load runs between a restarted node catching up and the next kill.
	// Default 1s.
	Settle time.Duration
	// CatchupSlack is how many entries behind the leader's commit index a restarted node may be
	// and count as caught up (under load the leader moves on while we poll). Default 64.
	CatchupSlack uint64
	// RecoverTimeout bounds each wait: for a new leader, for a successful write, for catch-up.
	// Default 30s.
	RecoverTimeout time.Duration
	// Progress receives a line per kill; nil disables it.
	Progress io.Writer
	// Logger receives diagnostics. Default discards.
	Logger *slog.Logger
}

// DefaultFailoverConfig returns the defaults documented on FailoverConfig.
func DefaultFailoverConfig() FailoverConfig {
	return FailoverConfig{
		Spawn:          DefaultSpawnConfig(),
		Kills:          10,
		Clients:        8,
		Keys:           10000,
		KeySize:        16,
		ValueSize:      100,
		Timeout:        2 * time.Second,
		Backoff:        5 * time.Millisecond,
		Settle:         time.Second,
		CatchupSlack:   64,
		RecoverTimeout: 30 * time.Second,
	}
}

// Validate reports the first problem with c, if any.
func (c *FailoverConfig) Validate() error {
	var errs []error
	if err := c.Spawn.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Spawn.Nodes < 3 {
		errs = append(errs, fmt.Errorf("nodes %d: failover needs at least 3", c.Spawn.Nodes))
	}
	if c.Kills < 1 || c.Clients < 1 {
		errs = append(errs, errors.New("kills and clients must be at least 1"))
	}
	lc := c.loadConfig()
	if err := lc.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.RecoverTimeout <= 0 || c.Backoff < 0 || c.Settle < 0 {
		errs = append(errs, errors.New("recover timeout must be positive, backoff and settle not negative"))
	}
	return errors.Join(errs...)
}

// loadConfig is the write load's Config (only the fields a worker reads matter).
func (c *FailoverConfig) loadConfig() Config {
	lc := DefaultConfig()
	lc.Keys, lc.KeySize, lc.ValueSize, lc.Timeout = c.Keys, c.KeySize, c.ValueSize, c.Timeout
	lc.Clients = []int{c.Clients}
	return lc
}

// KillResult is one leader kill.
type KillResult struct {
	Kill      int    `json:"kill"`
	Killed    string `json:"killed"`     // ID of the leader killed
	NewLeader string `json:"new_leader"` // ID of the node that took over
	// UnavailableMs is from the last write that succeeded before the kill to the first write
	// issued after the kill that succeeded.
	UnavailableMs float64 `json:"unavailable_ms"`
	// KillToWriteMs is from the SIGKILL to the first successful write issued after it.
	KillToWriteMs float64 `json:"kill_to_write_ms"`
	// NewLeaderMs is from the SIGKILL to a survivor reporting itself leader (polled every 10ms).
	NewLeaderMs float64 `json:"new_leader_ms"`
	// CatchupMs is from restarting the killed node to its applied index being within
	// CatchupSlack of the leader's commit index.
	CatchupMs float64 `json:"catchup_ms"`
	// Errors counts the writes that failed between the kill and the first success, by kind.
	Errors map[string]int64 `json:"errors,omitempty"`
}

// Stat is the median and worst of one figure over the kills.
type Stat struct {
	Median float64 `json:"median_ms"`
	Worst  float64 `json:"worst_ms"`
}

// FailoverReport is the result of Failover.
type FailoverReport struct {
	Started     time.Time    `json:"started"`
	Nodes       int          `json:"nodes"`
	Clients     int          `json:"clients"`
	Kills       []KillResult `json:"kills"`
	Unavailable Stat         `json:"unavailable"`
	KillToWrite Stat         `json:"kill_to_write"`
	NewLeader   Stat         `json:"new_leader"`
	Catchup     Stat         `json:"catchup"`
	// Load is the whole write load, kills included.
	Load RunResult `json:"load"`
	// Memory is each node's memory at the end.
	Memory []NodeMemory `json:"memory,omitempty"`
	Dir    string       `json:"dir,omitempty"` // where the nodes' data and logs were kept, if they were
}

// availability tracks write successes around one kill. The kill is armed once the killed
// process is known dead, so no write that succeeds after arming can have been answered by it.
type availability struct {
	mu         sync.Mutex
	last       time.Time // end of the latest success
	armed      bool
	deadAt     time.Time
	lastBefore time.Time // end of the latest success that ended by deadAt
	firstAfter time.Time // end of the first success issued after deadAt
	errors     map[string]int64
	gotAfter   chan struct{}
}

func (a *availability) observe(start, end time.Time, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if a.armed && a.firstAfter.IsZero() {
			a.errors[errorKind(err)]++
		}
		return
	}
	if end.After(a.last) {
		a.last = end
	}
	if !a.armed {
		return
	}
	if !end.After(a.deadAt) && end.After(a.lastBefore) {
		a.lastBefore = end
	}
	if a.firstAfter.IsZero() && start.After(a.deadAt) {
		a.firstAfter = end
		close(a.gotAfter)
	}
}

// arm starts watching for the first success issued after deadAt.
func (a *availability) arm(deadAt time.Time) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed, a.deadAt = true, deadAt
	a.lastBefore, a.firstAfter = a.last, time.Time{}
	a.errors = map[string]int64{}
	a.gotAfter = make(chan struct{})
	return a.gotAfter
}

func (a *availability) disarm() (lastBefore, firstAfter time.Time, errs map[string]int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed = false
	return a.lastBefore, a.firstAfter, cloneErrors(a.errors)
}

// Failover spawns a cluster, runs a write load through every node, and Kills times kills the
// leader, waits for writes to resume, restarts the killed node and waits for it to catch up.
func Failover(ctx context.Context, cfg FailoverConfig) (*FailoverReport, error) {
	return failover(ctx, cfg, nil)
}

func failover(ctx context.Context, cfg FailoverConfig, start starter) (rep *FailoverReport, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Spawn.Logger = log
	if start == nil {
		if start, err = defaultStarter(cfg.Spawn.Binary); err != nil {
			return nil, err
		}
	}
	c, err := startCluster(ctx, cfg.Spawn, start)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.markFailed()
		}
		err = errors.Join(err, c.Close())
		if rep != nil && (c.cfg.Keep || c.failed) {
			rep.Dir = c.cfg.Dir
		}
	}()
	rep = &FailoverReport{Started: time.Now().UTC(), Nodes: len(c.nodes), Clients: cfg.Clients}

	lc := cfg.loadConfig()
	lc.Seed = uint64(time.Now().UnixNano())
	hc := newHTTPClient(cfg.Clients, 0, cfg.Timeout, nil)
	defer hc.CloseIdleConnections()
	bases := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		bases[i] = baseURL(n.HTTPAddr)
	}
	avail := &availability{}
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		w := newWorker(lc, hc, bases, lc.Seed+uint64(i), false)
		w.cur, w.rotate, w.observe = i%len(bases), true, avail.observe
		workers[i] = w
	}

	cpu0 := processCPU()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan time.Duration, 1)
	go func() {
		loadDone <- drive(loadCtx, 0, 1<<62, workers, nil, "", func(ctx context.Context, w *worker) error {
			err := w.write(ctx, w.rng.IntN(w.keys))
			if err != nil && cfg.Backoff > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(cfg.Backoff):
				}
			}
			return err
		})
	}()
	stop := func() time.Duration {
		stopLoad()
		return <-loadDone
	}

	// Kill until done or a kill fails; the report covers the kills made either way.
	runErr := sleepCtx(ctx, cfg.Settle)
	for k := 1; k <= cfg.Kills && runErr == nil; k++ {
		kr, err := killOnce(ctx, cfg, c, avail, k)
		if err != nil {
			runErr = fmt.Errorf("kill %d: %w", k, err)
			break
		}
		rep.Kills = append(rep.Kills, kr)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "kill %2d: %s killed, %s leads after %.0fms; writes unavailable %.0fms (kill to write %.0fms); restarted node caught up in %.0fms\n",
				k, kr.Killed, kr.NewLeader, kr.NewLeaderMs, kr.UnavailableMs, kr.KillToWriteMs, kr.CatchupMs)
		}
		runErr = sleepCtx(ctx, cfg.Settle)
	}
	elapsed := stop()
	rep.Memory = c.memory()
	recs := make([]*recorder, len(workers))
	for i, w := range workers {
		recs[i] = w.rec
	}
	rep.Load = newRunResult(lc, cfg.Clients, elapsed, mergeRecorders(recs))
	rep.Load.Host.ToolCPU = (processCPU() - cpu0).Seconds() / elapsed.Seconds()
	rep.Unavailable = statOf(rep.Kills, func(k KillResult) float64 { return k.UnavailableMs })
	rep.KillToWrite = statOf(rep.Kills, func(k KillResult) float64 { return k.KillToWriteMs })
	rep.NewLeader = statOf(rep.Kills, func(k KillResult) float64 { return k.NewLeaderMs })
	rep.Catchup = statOf(rep.Kills, func(k KillResult) float64 { return k.CatchupMs })
	return rep, runErr
}

// killOnce kills the current leader and measures the recovery.
func killOnce(ctx context.Context, cfg FailoverConfig, c *spawnedCluster, avail *availability, k int) (KillResult, error) {
	leader, _, err := c.currentLeader(ctx)
	if err != nil {
		return KillResult{}, err
	}
	killAt := time.Now()
	if err := c.kill(leader); err != nil {
		return KillResult{}, fmt.Errorf("kill %s: %w", leader.ID, err)
	}
	gotWrite := avail.arm(time.Now())
	kr := KillResult{Kill: k, Killed: leader.ID}

	// Poll the survivors until one says it leads.
	var newLeaderAt time.Time
	err = c.poll(ctx, cfg.RecoverTimeout, "a new leader", func(ctx context.Context) bool {
		for _, n := range c.running() {
			s, err := nodeStatus(ctx, c.hc, n.HTTPAddr)
			if err == nil && s.IsLeader() {
				newLeaderAt, kr.NewLeader = time.Now(), n.ID
				return true
			}
		}
		return false
	})
	if err != nil {
		return kr, err
	}
	kr.NewLeaderMs = ms(newLeaderAt.Sub(killAt))

	select {
	case <-gotWrite:
	case <-time.After(cfg.RecoverTimeout):
		c.markFailed()
		return kr, fmt.Errorf("no write succeeded within %s of killing %s (node logs in %s)", cfg.RecoverTimeout, leader.ID, c.cfg.Dir)
	case <-ctx.Done():
		return kr, ctx.Err()
	}
	lastBefore, firstAfter, errs := avail.disarm()
	kr.Errors = errs
	kr.KillToWriteMs = ms(firstAfter.Sub(killAt))
	if !lastBefore.IsZero() {
		kr.UnavailableMs = ms(firstAfter.Sub(lastBefore))
	}

	restartAt := time.Now()
	if err := c.restart(leader); err != nil {
		return kr, err
	}
	err = c.poll(ctx, cfg.RecoverTimeout, leader.ID+" to catch up", func(ctx context.Context) bool {
		s, err := nodeStatus(ctx, c.hc, leader.HTTPAddr)
		if err != nil || s.LeaderID == "" {
			return false
		}
		l := c.byID(s.LeaderID)
		if l == nil {
			return false
		}
		ls, err := nodeStatus(ctx, c.hc, l.HTTPAddr)
		return err == nil && s.AppliedIndex+cfg.CatchupSlack >= ls.CommitIndex
	})
	if err != nil {
		return kr, err
	}
	kr.CatchupMs = ms(time.Since(restartAt))
	if _, err := c.waitReady(ctx); err != nil {
		return kr, err
	}
	return kr, nil
}

func statOf(ks []KillResult, f func(KillResult) float64) Stat {
	if len(ks) == 0 {
		return Stat{}
	}
	v := make([]float64, len(ks))
	for i, k := range ks {
		v[i] = f(k)
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Stat{Median: med, Worst: v[len(v)-1]}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// defaultStarter execs binary, or this process's own executable when binary is "".
func defaultStarter(binary string) (starter, error) {
	if binary == "" {
		exe, err := osExecutable()
		if err != nil {
			return nil, fmt.Errorf("find own binary: %w", err)
		}
		binary = exe
	}
	return execStarter(binary), nil
}
