package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

type readReq struct{ done chan readResp }

type readResp struct {
	index uint64
	err   error
}

// ReadIndex returns an index that a linearizable read must wait for: this
// node's commit index, captured after the read started, confirmed by a
// quorum round that proves this node was still leader afterwards. Concurrent
// callers share one confirmation round. Only a leader whose post-election
// barrier has been applied answers; others get a *NotLeaderError.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if err := n.waitReady(ctx); err != nil {
		return 0, err
	}
	req := &readReq{done: make(chan readResp, 1)}
	select {
	case n.reads <- req:
	case <-ctx.Done():
		return 0, fmt.Errorf("queue read: %w", ctx.Err())
	case <-n.ctx.Done():
		return 0, ErrShuttingDown
	}
	select {
	case resp := <-req.done:
		return resp.index, resp.err
	case <-ctx.Done():
		return 0, fmt.Errorf("confirm leadership: %w", ctx.Err())
	case <-n.ctx.Done():
		return 0, ErrShuttingDown
	}
}

// WaitApplied blocks until the local state machine has applied index idx
// and readers see it; it has pending entries committed at once for that
// (a read that must see idx).
func (n *Node) WaitApplied(ctx context.Context, idx uint64) error {
	return n.sm.waitApplied(ctx, idx, true)
}

// WatchApplied is WaitApplied for watches: it does not hurry the commit, so
// it returns up to the commit interval after idx is applied.
func (n *Node) WatchApplied(ctx context.Context, idx uint64) error {
	return n.sm.waitApplied(ctx, idx, false)
}

// LinearizableBarrier makes a local read that follows it linearizable on the
// leader: ReadIndex, then wait for the state machine to reach it.
func (n *Node) LinearizableBarrier(ctx context.Context) (uint64, error) {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return 0, err
	}
	if err := n.sm.waitApplied(ctx, idx, true); err != nil {
		return 0, err
	}
	return idx, nil
}

// runReadBatcher serves read-index requests in rounds: it takes every
// request waiting, captures the commit index, runs one VerifyLeader, and
// answers them all. Requests arriving during a round wait for the next one,
// because their commit index must be captured after they arrived.
func (n *Node) runReadBatcher() {
	batch := make([]*readReq, 0, 64)
	for {
		batch = batch[:0]
		select {
		case <-n.ctx.Done():
			return
		case r := <-n.reads:
			batch = append(batch, r)
		}
	drain:
		for {
			select {
			case r := <-n.reads:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		resp := n.confirmRound()
		for _, r := range batch {
			r.done <- resp
		}
	}
}

func (n *Node) confirmRound() readResp {
	term := n.raft.CurrentTerm()
	if n.raft.State() != raft.Leader {
		return readResp{err: n.notLeader()}
	}
	// Only once this term's barrier is applied does the commit index cover
	// every write the previous leaders acknowledged.
	if !n.readyForTerm(term) {
		return readResp{err: ErrNotReady}
	}
	idx := n.raft.CommitIndex()
	if err := n.await(n.raft.VerifyLeader()); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return readResp{err: ErrShuttingDown}
		}
		return readResp{err: n.notLeader()}
	}
	if n.raft.CurrentTerm() != term {
		return readResp{err: n.notLeader()}
	}
	return readResp{index: idx}
}
