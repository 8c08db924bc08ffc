package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// Apply proposes cmd on this node, which must be the leader, and waits until
// it is committed and applied. The error tells the caller what happened:
//
//   - nil: committed and applied; the Result says whether a CAS took effect.
//   - ErrBadRequest, ErrNotLeader (*NotLeaderError), ErrNoLeader,
//     ErrShuttingDown, ErrDiskFull (*DiskFullError): not proposed, certainly
//     did not happen.
//   - ErrOutcomeUnknown: proposed, but leadership was lost or the commit did
//     not arrive within ApplyTimeout (or ctx ended); it may or may not commit.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	if err := cmd.Validate(); err != nil {
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if n.closed.Load() {
		return fsm.Result{}, ErrShuttingDown
	}
	if n.raft.State() != raft.Leader {
		return fsm.Result{}, n.notLeader()
	}
	if err := n.checkDiskSpace(cmd); err != nil {
		return fsm.Result{}, err
	}
	id := n.pending.add()
	defer n.pending.done(id)
	timer := time.NewTimer(n.cfg.ApplyTimeout)
	defer timer.Stop()

	var out <-chan batchOutcome
	if n.writes.batchable(cmd) {
		out = n.writes.submit(cmd)
	} else {
		out = n.propose(cmd)
	}
	var o batchOutcome
	select {
	case o = <-out:
	case <-timer.C:
		return fsm.Result{}, fmt.Errorf("%w: no commit within %s", ErrOutcomeUnknown, n.cfg.ApplyTimeout)
	case <-ctx.Done():
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
	if o.err != nil {
		return fsm.Result{}, o.err
	}
	if o.res.Err != nil {
		// Committed, but the state machine rejected it without a change.
		return o.res, fmt.Errorf("%w: %w", ErrBadRequest, o.res.Err)
	}
	return o.res, nil
}

// propose sends cmd as its own entry; its outcome arrives on the channel.
func (n *Node) propose(cmd fsm.Command) <-chan batchOutcome {
	f := n.raft.Apply(cmd.Encode(), n.cfg.ApplyTimeout)
	out := make(chan batchOutcome, 1)
	// await returns on commit, on loss of leadership and on Close, so this
	// goroutine always ends; Close waits for it.
	n.wg.Go(func() {
		if err := n.await(f); err != nil {
			out <- batchOutcome{err: n.classifyApplyError(err)}
			return
		}
		res, ok := f.Response().(fsm.Result)
		if !ok {
			out <- batchOutcome{err: fmt.Errorf("%w: unexpected apply response %T", ErrOutcomeUnknown, f.Response())}
			return
		}
		out <- batchOutcome{res: res}
	})
	return out
}

// classifyApplyError maps raft's errors to this package's outcome errors.
func (n *Node) classifyApplyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return n.notLeader()
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: leadership transfer in progress", ErrNoLeader)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: raft apply queue full: %w", ErrNoLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: leadership lost after proposing", ErrOutcomeUnknown)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: node shut down after proposing", ErrOutcomeUnknown)
	default:
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
}
