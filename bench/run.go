package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Run measures cfg.Workload at each client count in cfg.Clients, after the baselines (when
// enabled) and the prefill (when the workload reads), and returns the report. When ctx ends
// part way, the report holds the measurements finished so far, alongside the error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	log := cfg.logger()
	maxClients := slices.Max(cfg.Clients)
	if cfg.TLS != nil {
		nodes := make([]string, len(cfg.Nodes))
		for i, n := range cfg.Nodes {
			nodes[i] = baseURLScheme(n, "https")
		}
		cfg.Nodes = nodes
	}
	hc := newHTTPClient(maxClients, cfg.Conns, cfg.Timeout, cfg.TLS)
	defer hc.CloseIdleConnections()

	targets, leader, err := resolveTargets(ctx, hc, cfg.Nodes, cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("find targets: %w", err)
	}
	if cfg.TLS != nil && leader != "" {
		leader = baseURLScheme(leader, "https") // the leader's address from a status answer has no scheme
		for i := range targets {
			targets[i] = baseURLScheme(targets[i], "https")
		}
	}
	log.Info("targets", "target", cfg.Target, "nodes", targets, "leader", leader)
	rep := newReport(cfg, targets, leader)

	if cfg.Baselines {
		b, err := measureBaselines(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("baselines: %w", err)
		}
		rep.Baselines = b
	}
	prefilled := false
	if cfg.Prefill && cfg.Workload != WorkloadPut {
		if err := prefill(ctx, cfg, hc, targets); err != nil {
			return nil, fmt.Errorf("prefill: %w", err)
		}
		prefilled = true
	}
	for _, n := range cfg.Clients {
		if rep.Baselines != nil {
			if err := rep.Baselines.floorFor(ctx, cfg, n); err != nil {
				return rep, fmt.Errorf("baselines: %w", err)
			}
		}
		if cfg.Warmup > 0 {
			wcfg := cfg
			wcfg.Total, wcfg.Duration, wcfg.Progress = 0, cfg.Warmup, nil
			if _, err := runLoad(ctx, wcfg, hc, targets, n, prefilled); err != nil {
				return rep, fmt.Errorf("warmup: %w", err)
			}
		}
		res, err := runLoad(ctx, cfg, hc, targets, n, prefilled)
		if err != nil {
			return rep, err
		}
		rep.addRun(res)
	}
	return rep, ctx.Err()
}

// loadFunc is what one client does in a loop: issue one request and record it.
type loadFunc func(ctx context.Context, w *worker) error

// runLoad runs one measurement with n clients spread round-robin over targets.
func runLoad(ctx context.Context, cfg Config, hc *http.Client, targets []string, n int, prefilled bool) (RunResult, error) {
	workers := make([]*worker, n)
	for i := range workers {
		workers[i] = newWorker(cfg, hc, []string{baseURL(targets[i%len(targets)])}, cfg.Seed+uint64(i), prefilled)
	}
	label := fmt.Sprintf("%s c=%d", cfg.Workload, n)
	cpu0 := processCPU()
	var nodes0 map[string]time.Duration
	if cfg.nodeCPU != nil {
		nodes0 = cfg.nodeCPU()
	}
	elapsed := drive(ctx, cfg.Duration, cfg.Total, workers, cfg.Progress, label,
		func(ctx context.Context, w *worker) error {
			err := w.step(ctx, cfg.Workload)
			if err != nil && cfg.ErrorBackoff > 0 {
				_ = sleepCtx(ctx, cfg.ErrorBackoff)
			}
			return err
		})
	if err := ctx.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return RunResult{}, err
	}
	recs := make([]*recorder, n)
	for i, w := range workers {
		recs[i] = w.rec
	}
	res := newRunResult(cfg, n, elapsed, mergeRecorders(recs))
	res.Host.ToolCPU = (processCPU() - cpu0).Seconds() / elapsed.Seconds()
	if cfg.nodeCPU != nil {
		res.addNodeCPU(nodes0, cfg.nodeCPU(), elapsed)
	}
	return res, nil
}

func newWorker(cfg Config, hc *http.Client, bases []string, seed uint64, prefilled bool) *worker {
	return &worker{
		hc:        hc,
		nodes:     bases,
		rec:       newRecorder(),
		rng:       rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		keys:      cfg.Keys,
		keySize:   cfg.KeySize,
		value:     makeValue(cfg.ValueSize, seed),
		readQuery: readQuery(cfg.Consistency),
		readRatio: cfg.ReadRatio,
		prefilled: prefilled,
		casIdx:    map[int]uint64{},
		token:     cfg.Token,
	}
}

// drive runs every worker's loop until duration passes (when total is 0), total requests
// have been issued, or ctx ends, printing progress meanwhile. It returns the time the
// measurement took: until the last worker stopped.
func drive(ctx context.Context, duration time.Duration, total int64, workers []*worker, progress io.Writer, label string, step loadFunc) time.Duration {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if total == 0 {
		runCtx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	var issued atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for runCtx.Err() == nil {
				if total > 0 && issued.Add(1) > total {
					return
				}
				_ = step(runCtx, w)
			}
		})
	}
	var stopProgress func()
	if progress != nil {
		stopProgress = startProgress(progress, label, start, workers)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if stopProgress != nil {
		stopProgress()
	}
	return elapsed
}

// prefill writes every key of the key space once, so that reads find them.
func prefill(ctx context.Context, cfg Config, hc *http.Client, targets []string) error {
	const conc = 32
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for c := range min(conc, cfg.Keys) {
		w := newWorker(cfg, hc, []string{baseURL(targets[c%len(targets)])}, cfg.Seed+uint64(c), false)
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Keys {
					return
				}
				var err error
				for attempt := range 5 {
					if err = w.write(ctx, i); err == nil {
						break
					}
					time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
				}
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = fmt.Errorf("key %d: %w", i, err) })
				}
			}
		})
	}
	wg.Wait()
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "prefill: %d keys in %s\n", cfg.Keys, time.Since(start).Round(time.Millisecond))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d keys not written, first: %w", n, cfg.Keys, firstErr)
	}
	return nil
}
