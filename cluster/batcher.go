package cluster

import (
	"fmt"
	"sync"
	"sync/atomic"

	gometrics "github.com/hashicorp/go-metrics"

	"github.com/raftkv/raftkv/fsm"
)

// Write coalescing. Every Raft entry costs the leader a log commit, each
// follower a log commit and every node a state-machine step, and on a small
// box those fsyncs and hand-offs, not the bytes, bound the write rate. So the
// leader gathers the single-key writes (set, delete, cas, cad) that wait at
// the same moment into one fsm.OpBatch entry.
//
// At most WriteBatchInflight batches are proposed and not yet applied; while
// they are, new writes queue, and the next batch takes them all. With one
// client there is no queue and every write goes out alone, as a plain
// command, so single-client latency is unchanged.
//
// Two writes to one key never share a batch: every command in a batch gets
// the entry's index as its ModifyIndex, and a key's index must grow with
// every change for CAS and blocking queries to mean anything. The later
// write waits for the next batch, keeping their order.

// Bounds on one batch.
const (
	maxBatchBytes = 256 << 10 // encoded commands per batch entry
	// batchValueLimit: a write with a larger value goes out on its own.
	batchValueLimit = 16 << 10
)

// batchWaiter is one write waiting in the queue.
type batchWaiter struct {
	cmd  fsm.Command
	done chan batchOutcome // buffered: the batcher never blocks on it
}

type batchOutcome struct {
	res fsm.Result
	err error
}

// writeBatcher is the queue and its proposer. The node owns it: run is one
// goroutine in the node's WaitGroup, and each batch's waiter runs there too.
type writeBatcher struct {
	n     *Node
	slots chan struct{} // one token per batch in flight

	entries, writes atomic.Uint64 // entries proposed, and the writes they carried

	mu      sync.Mutex
	queue   []*batchWaiter
	stopped bool          // run has ended: nothing queued would be proposed
	wake    chan struct{} // cap 1: something was queued
}

func newWriteBatcher(n *Node, inflight int) *writeBatcher {
	return &writeBatcher{n: n, slots: make(chan struct{}, inflight), wake: make(chan struct{}, 1)}
}

// batchable reports whether cmd goes through the batcher.
func (b *writeBatcher) batchable(cmd fsm.Command) bool {
	return b != nil && cmd.Batchable() && len(cmd.Value) <= batchValueLimit
}

// submit queues cmd and returns the channel its outcome arrives on.
func (b *writeBatcher) submit(cmd fsm.Command) <-chan batchOutcome {
	w := &batchWaiter{cmd: cmd, done: make(chan batchOutcome, 1)}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		w.done <- batchOutcome{err: ErrShuttingDown}
		return w.done
	}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return w.done
}

// run proposes batches until the node shuts down, then fails what is still
// queued (never proposed) with ErrShuttingDown.
func (b *writeBatcher) run() {
	defer b.failQueued(ErrShuttingDown)
	for {
		select {
		case <-b.wake:
		case <-b.n.shutdownCh:
			return
		}
		for {
			select {
			case b.slots <- struct{}{}:
			case <-b.n.shutdownCh:
				return
			}
			batch := b.take()
			if len(batch) == 0 {
				<-b.slots
				break
			}
			b.n.wg.Go(func() {
				defer func() { <-b.slots }()
				b.propose(batch)
			})
		}
	}
}

// take removes the next batch from the queue: writes in queue order, at most
// one per key, up to fsm.MaxBatchOps commands and maxBatchBytes.
func (b *writeBatcher) take() []*batchWaiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		return nil
	}
	var batch, rest []*batchWaiter
	keys := make(map[string]struct{}, len(b.queue))
	size := 0
	for i, w := range b.queue {
		if len(batch) == fsm.MaxBatchOps || size >= maxBatchBytes {
			rest = append(rest, b.queue[i:]...)
			break
		}
		if _, dup := keys[w.cmd.Key]; dup {
			rest = append(rest, w)
			continue
		}
		keys[w.cmd.Key] = struct{}{}
		size += len(w.cmd.Key) + len(w.cmd.Value) + 16
		batch = append(batch, w)
	}
	clear(b.queue[len(rest):]) // drop references held past the new length
	b.queue = append(b.queue[:0], rest...)
	return batch
}

func (b *writeBatcher) failQueued(err error) {
	b.mu.Lock()
	queued := b.queue
	b.queue, b.stopped = nil, true
	b.mu.Unlock()
	for _, w := range queued {
		w.done <- batchOutcome{err: err}
	}
}

// propose sends one batch as one entry and hands every waiter its outcome.
// A batch of one goes out as the plain command.
func (b *writeBatcher) propose(batch []*batchWaiter) {
	if b.n.closed.Load() {
		for _, w := range batch {
			w.done <- batchOutcome{err: ErrShuttingDown}
		}
		return
	}
	observeWriteBatch(len(batch))
	b.entries.Add(1)
	b.writes.Add(uint64(len(batch)))
	if len(batch) == 1 {
		batch[0].done <- <-b.n.propose(batch[0].cmd)
		return
	}
	cmds := make([]fsm.Command, len(batch))
	for i, w := range batch {
		cmds[i] = w.cmd
	}
	o := <-b.n.propose(fsm.Command{Op: fsm.OpBatch, Value: fsm.EncodeBatch(cmds)})
	if o.err == nil && (o.res.Err != nil || len(o.res.Batch) != len(batch)) {
		// Every command was validated before it was queued, so this is a
		// state machine that disagrees with the leader: nothing took effect.
		err := o.res.Err
		if err == nil {
			err = fmt.Errorf("batch of %d answered %d results", len(batch), len(o.res.Batch))
		}
		o.err = fmt.Errorf("%w: batch rejected by the state machine: %w", ErrBadRequest, err)
	}
	for i, w := range batch {
		if o.err != nil {
			w.done <- batchOutcome{err: o.err}
			continue
		}
		w.done <- batchOutcome{res: fsm.Result{Index: o.res.Index, OK: o.res.Batch[i]}}
	}
}

// WriteBatches reports how many entries the write batcher has proposed and
// how many writes they carried (both 0 when coalescing is off).
func (n *Node) WriteBatches() (entries, writes uint64) {
	if n.writes == nil {
		return 0, 0
	}
	return n.writes.entries.Load(), n.writes.writes.Load()
}

// observeWriteBatch records how many writes one entry carried
// (raftkv_write_batch_size on /metrics).
func observeWriteBatch(n int) {
	gometrics.AddSample([]string{"write", "batch_size"}, float32(n))
}
