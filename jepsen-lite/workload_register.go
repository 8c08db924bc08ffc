package jepsenlite

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Workload generates client operations and knows how to check them.
type Workload interface {
	Name() string
	// Run drives one worker until ctx ends.
	Run(ctx context.Context, w *worker)
	// Final runs after the cluster has healed and converged (e.g. final
	// reads from every node); it may record ops.
	Final(ctx context.Context, clients []*Client, h *History, opTO time.Duration)
	// Check returns the workload's checkers' results.
	Check(ops []Op, lin LinearizableChecker) []CheckResult
}

// RegisterWorkload: per-key reads (default and ?stale), unique-value writes
// and read-then-CAS on short-lived keys. A key takes OpsPerKey ops, then a
// fresh key replaces it, which keeps each porcupine partition small.
type RegisterWorkload struct {
	Prefix     string
	ActiveKeys int
	OpsPerKey  int

	mu    sync.Mutex
	slots []keySlot
	next  int
	seq   int
}

type keySlot struct {
	key string
	ops int
}

// NewRegisterWorkload returns a register workload writing under prefix.
func NewRegisterWorkload(prefix string) *RegisterWorkload {
	return &RegisterWorkload{Prefix: prefix, ActiveKeys: 4, OpsPerKey: 80}
}

func (r *RegisterWorkload) Name() string { return "register" }

// pick returns a live key (for slot i) and a value unique across the run.
func (r *RegisterWorkload) pick(i int) (key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.slots == nil {
		r.slots = make([]keySlot, r.ActiveKeys)
		for j := range r.slots {
			r.slots[j] = keySlot{key: fmt.Sprintf("%sr%d", r.Prefix, r.next)}
			r.next++
		}
	}
	s := &r.slots[i%len(r.slots)]
	if s.ops >= r.OpsPerKey {
		*s = keySlot{key: fmt.Sprintf("%sr%d", r.Prefix, r.next)}
		r.next++
	}
	s.ops++
	r.seq++
	return s.key, fmt.Sprintf("v%d", r.seq)
}

func (r *RegisterWorkload) Run(ctx context.Context, w *worker) {
	for ctx.Err() == nil {
		key, val := r.pick(w.rng.IntN(1 << 20))
		c := w.client()
		switch x := w.rng.IntN(100); {
		case x < 35:
			w.read(ctx, c, key, false)
		case x < 45:
			w.read(ctx, c, key, true)
		case x < 70:
			w.write(ctx, c, key, val)
		default:
			_, rr := w.read(ctx, c, key, false)
			if rr.Outcome != OutcomeOK || ctx.Err() != nil {
				continue
			}
			var idx uint64
			if rr.Found {
				idx = rr.Index
			}
			w.cas(ctx, w.client(), key, rr.Value, idx, val)
		}
	}
}

func (r *RegisterWorkload) Final(context.Context, []*Client, *History, time.Duration) {}

func (r *RegisterWorkload) Check(ops []Op, lin LinearizableChecker) []CheckResult {
	return []CheckResult{lin.Check(ops), StaleReadChecker(ops)}
}
