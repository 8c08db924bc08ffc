package jepsenlite

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// worker is one client thread. It performs one op at a time against a node
// chosen at random, records each op, and becomes a new process after an
// unknown outcome (its old process may still be "in flight" forever).
type worker struct {
	id      int
	process int
	rng     *rand.Rand
	clients []*Client
	hist    *History
	procs   *atomic.Int64 // shared process-id allocator
	opTO    time.Duration
}

func (w *worker) client() *Client { return w.clients[w.rng.IntN(len(w.clients))] }

func (w *worker) finish(op Op, r Reply) Op {
	op.Complete = w.hist.Now()
	op.Outcome = r.Outcome
	op.Error = r.Err
	op = w.hist.AddOp(op)
	switch op.Outcome {
	case OutcomeInfo:
		w.process = int(w.procs.Add(1))
	case OutcomeFail:
		// Back off so a dead or leaderless node is not hammered into
		// thousands of useless ops; a refused connection waits longer.
		d := 20 * time.Millisecond
		if op.Error == "connection refused" {
			d = 100 * time.Millisecond
		}
		time.Sleep(d + time.Duration(w.rng.IntN(int(d))))
	}
	return op
}

func (w *worker) read(ctx context.Context, c *Client, key string, stale bool) (Op, Reply) {
	kind := KindRead
	if stale {
		kind = KindStaleRead
	}
	op := Op{Process: w.process, Kind: kind, Node: c.Node(), Key: key, Invoke: w.hist.Now()}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opTO)
	r := c.Get(cctx, key, stale)
	cancel()
	op.Result, op.RaftIndex = r.Value, r.Index
	return w.finish(op, r), r
}

func (w *worker) write(ctx context.Context, c *Client, key, value string) (Op, Reply) {
	op := Op{Process: w.process, Kind: KindWrite, Node: c.Node(), Key: key, Value: value, Invoke: w.hist.Now()}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opTO)
	r := c.Put(cctx, key, value, nil)
	cancel()
	if r.Outcome == OutcomeOK && !r.Swapped {
		r.Outcome, r.Err = OutcomeInfo, "unconditional put answered false"
	}
	op.RaftIndex = r.Index
	return w.finish(op, r), r
}

// cas swaps key from expect (read at ModifyIndex idx; "" and 0 = absent) to
// value. A CAS that answers false is recorded as ok with Swapped=false: the
// checker uses it (it observed the register), the counts show it as a fail.
func (w *worker) cas(ctx context.Context, c *Client, key, expect string, idx uint64, value string) (Op, Reply) {
	op := Op{Process: w.process, Kind: KindCAS, Node: c.Node(), Key: key, Value: value, Expect: expect, ExpectIndex: idx, Invoke: w.hist.Now()}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opTO)
	r := c.Put(cctx, key, value, &idx)
	cancel()
	op.Swapped, op.RaftIndex = r.Swapped, r.Index
	return w.finish(op, r), r
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
