package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"
)

// CatchupConfig describes a catch-up measurement: a follower is killed, the cluster takes
// Writes writes without it, and the follower is restarted and timed until it has applied
// everything the leader had committed at the restart.
type CatchupConfig struct {
	Spawn SpawnConfig
	// Writes is how many writes the follower misses, each to a distinct key. Default 200000.
	Writes int
	// Clients is the number of writers (all on the leader). Default 64.
	Clients int
	// KeySize and ValueSize shape the writes. Defaults 16, 100.
	KeySize, ValueSize int
	// Timeout bounds one write. Default 10s.
	Timeout time.Duration
	// RecoverTimeout bounds the wait for the follower to catch up. Default 120s.
	RecoverTimeout time.Duration
	// Progress receives the live progress line of the write phase; nil disables it.
	Progress io.Writer
	// Logger receives diagnostics. Default discards.
	Logger *slog.Logger
}

// DefaultCatchupConfig returns the defaults documented on CatchupConfig.
func DefaultCatchupConfig() CatchupConfig {
	return CatchupConfig{
		Spawn:          DefaultSpawnConfig(),
		Writes:         200000,
		Clients:        64,
		KeySize:        16,
		ValueSize:      100,
		Timeout:        10 * time.Second,
		RecoverTimeout: 120 * time.Second,
	}
}

func (c *CatchupConfig) loadConfig() Config {
	lc := DefaultConfig()
	lc.Keys, lc.KeySize, lc.ValueSize, lc.Timeout = max(c.Writes, 1), c.KeySize, c.ValueSize, c.Timeout
	lc.Clients = []int{max(c.Clients, 1)}
	return lc
}

// Validate reports the first problem with c, if any.
func (c *CatchupConfig) Validate() error {
	var errs []error
	if err := c.Spawn.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Spawn.Nodes < 3 {
		errs = append(errs, fmt.Errorf("nodes %d: catch-up needs at least 3", c.Spawn.Nodes))
	}
	if c.Writes < 1 || c.Clients < 1 {
		errs = append(errs, errors.New("writes and clients must be at least 1"))
	}
	if c.RecoverTimeout <= 0 {
		errs = append(errs, errors.New("recover timeout must be positive"))
	}
	lc := c.loadConfig()
	if err := lc.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CatchupReport is the result of Catchup.
type CatchupReport struct {
	Started  time.Time `json:"started"`
	Nodes    int       `json:"nodes"`
	Follower string    `json:"follower"`
	// Write phase, with the follower down.
	Writes int       `json:"writes"`
	Load   RunResult `json:"load"`
	// TargetIndex is the leader's commit index when the follower was restarted.
	TargetIndex uint64 `json:"target_index"`
	// StartIndex is the follower's applied index when it first answered after the restart.
	StartIndex uint64 `json:"start_index"`
	// AnswerMs is from the restart to the follower first answering its status endpoint.
	AnswerMs float64 `json:"answer_ms"`
	// CatchupMs is from the restart to the follower's applied index reaching TargetIndex
	// (polled every 10ms).
	CatchupMs float64 `json:"catchup_ms"`
	// Memory is each node's memory after the catch-up.
	Memory []NodeMemory `json:"memory,omitempty"`
	Dir    string       `json:"dir,omitempty"`
}

// Catchup spawns a cluster, kills a follower, writes cfg.Writes keys through the leader,
// restarts the follower and times its catch-up.
func Catchup(ctx context.Context, cfg CatchupConfig) (*CatchupReport, error) {
	return catchup(ctx, cfg, nil)
}

func catchup(ctx context.Context, cfg CatchupConfig, start starter) (rep *CatchupReport, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.Logger != nil {
		cfg.Spawn.Logger = cfg.Logger
	}
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
	leader, _, err := c.currentLeader(ctx)
	if err != nil {
		return nil, err
	}
	var follower *spawnedNode
	for _, n := range c.nodes {
		if n != leader {
			follower = n
			break
		}
	}
	rep = &CatchupReport{Started: time.Now().UTC(), Nodes: len(c.nodes), Follower: follower.ID, Writes: cfg.Writes}
	if err := c.kill(follower); err != nil {
		return rep, fmt.Errorf("kill %s: %w", follower.ID, err)
	}

	lc := cfg.loadConfig()
	lc.Seed = uint64(time.Now().UnixNano())
	hc := newHTTPClient(cfg.Clients, 0, cfg.Timeout, nil)
	defer hc.CloseIdleConnections()
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		workers[i] = newWorker(lc, hc, []string{baseURL(leader.HTTPAddr)}, lc.Seed+uint64(i), false)
	}
	var seq atomic.Int64
	cpu0, nodes0 := processCPU(), c.cpu()
	elapsed := drive(ctx, 0, int64(cfg.Writes), workers, cfg.Progress, fmt.Sprintf("catch-up writes c=%d", cfg.Clients),
		func(ctx context.Context, w *worker) error { return w.write(ctx, int(seq.Add(1)-1)%lc.Keys) })
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	recs := make([]*recorder, len(workers))
	for i, w := range workers {
		recs[i] = w.rec
	}
	rep.Load = newRunResult(lc, cfg.Clients, elapsed, mergeRecorders(recs))
	rep.Load.Host.ToolCPU = (processCPU() - cpu0).Seconds() / elapsed.Seconds()
	rep.Load.addNodeCPU(nodes0, c.cpu(), elapsed)

	ls, err := nodeStatus(ctx, c.hc, leader.HTTPAddr)
	if err != nil {
		return rep, fmt.Errorf("leader status: %w", err)
	}
	rep.TargetIndex = ls.CommitIndex
	restartAt := time.Now()
	if err := c.restart(follower); err != nil {
		return rep, err
	}
	answered := false
	err = c.poll(ctx, cfg.RecoverTimeout, follower.ID+" to catch up", func(ctx context.Context) bool {
		s, err := nodeStatus(ctx, c.hc, follower.HTTPAddr)
		if err != nil {
			return false
		}
		if !answered {
			answered = true
			rep.AnswerMs = ms(time.Since(restartAt))
			rep.StartIndex = s.AppliedIndex
		}
		return s.AppliedIndex >= rep.TargetIndex
	})
	if err != nil {
		return rep, err
	}
	rep.CatchupMs = ms(time.Since(restartAt))
	rep.Memory = c.memory()
	return rep, nil
}
