package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// metaNodePrefix keys the replicated node metadata: metaNodePrefix+ID ->
// the node's HTTP address.
const metaNodePrefix = "node/http/"

// watchLeadership runs the read barrier each time this node becomes leader
// and clears read readiness each time it stops being leader.
func (n *Node) watchLeadership() {
	leaderCh := n.raft.LeaderCh()
	var stopLeading func()
	defer func() {
		if stopLeading != nil {
			stopLeading()
		}
	}()
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-leaderCh:
			n.resetReady()
			if stopLeading != nil {
				stopLeading()
				stopLeading = nil
			}
			if !isLeader {
				n.log.Info("lost leadership")
				continue
			}
			n.log.Info("gained leadership", "term", n.raft.CurrentTerm())
			n.runBarrier()
			n.registerSelf()
			stopLeading = n.startLeaderDuties()
		}
	}
}

// startLeaderDuties starts what only a leader runs: the failure detector
// (autopilot) and the disk-stall watchdog. The returned func stops them and
// waits for them.
func (n *Node) startLeaderDuties() func() {
	ctx, cancel := context.WithCancel(n.ctx)
	n.detector.start(ctx)
	var wg sync.WaitGroup
	if n.cfg.DiskStallTimeout > 0 {
		wg.Go(func() { n.watchDiskStall(ctx) })
	}
	return func() {
		cancel()
		n.detector.stop()
		wg.Wait()
	}
}

func (n *Node) resetReady() {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	n.readyTerm = 0
	select {
	case <-n.readyCh:
		n.readyCh = make(chan struct{})
	default:
	}
}

// runBarrier commits an fsm.OpNoop in the new term and waits until the state
// machine has applied it. Until then the new leader's commit index may not
// cover everything the previous leader acknowledged, so linearizable reads
// wait for it. Retries until it succeeds or leadership is lost.
func (n *Node) runBarrier() {
	noop := fsm.Command{Op: fsm.OpNoop}.Encode()
	for n.ctx.Err() == nil && n.raft.State() == raft.Leader {
		term := n.raft.CurrentTerm()
		f := n.raft.Apply(noop, n.cfg.ApplyTimeout)
		if err := n.await(f); err != nil {
			n.log.Warn("read barrier failed", "term", term, "error", err)
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
				return
			}
			continue
		}
		// The response arrives after the state machine applied the entry.
		if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
			return
		}
		n.readyMu.Lock()
		n.readyTerm = term
		close(n.readyCh)
		n.readyMu.Unlock()
		n.log.Info("leader ready for linearizable reads", "term", term, "barrier_index", f.Index())
		return
	}
}

// readyForTerm reports whether the barrier of term has been applied.
func (n *Node) readyForTerm(term uint64) bool {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	return n.readyTerm != 0 && n.readyTerm == term
}

// waitReady blocks until this node is a leader whose barrier has been applied.
func (n *Node) waitReady(ctx context.Context) error {
	for {
		if n.closed.Load() {
			return ErrShuttingDown
		}
		if n.raft.State() != raft.Leader {
			return n.notLeader()
		}
		n.readyMu.Lock()
		ready := n.readyTerm != 0 && n.readyTerm == n.raft.CurrentTerm()
		ch := n.readyCh
		n.readyMu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for leader barrier: %w: %w", ErrNotReady, ctx.Err())
		case <-n.ctx.Done():
			return ErrShuttingDown
		}
	}
}

// registerSelf makes sure the replicated node metadata holds this node's
// current HTTP address, so followers can forward to it.
func (n *Node) registerSelf() {
	if n.cfg.HTTPAddr == "" {
		return
	}
	cur, ok, err := n.store.Meta(metaNodePrefix + n.cfg.ID)
	if err == nil && ok && string(cur) == n.cfg.HTTPAddr {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
	defer cancel()
	cmd := fsm.Command{Op: fsm.OpSetMeta, Key: metaNodePrefix + n.cfg.ID, Value: []byte(n.cfg.HTTPAddr)}
	if _, err := n.Apply(ctx, cmd); err != nil {
		n.log.Warn("register own http address", "error", err)
	}
}

// transferLeadership hands leadership to another voter and waits for it.
func (n *Node) transferLeadership(ctx context.Context) error {
	n.log.Info("transferring leadership")
	f := n.raft.LeadershipTransfer()
	done := make(chan error, 1)
	n.wg.Go(func() { done <- n.await(f) })
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("leadership transfer: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("leadership transfer: %w", ctx.Err())
	}
}

func (n *Node) otherVoters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.ID {
			c++
		}
	}
	return c
}

// notLeader builds a NotLeaderError naming the current leader, if known.
func (n *Node) notLeader() error {
	addr, id := n.raft.LeaderWithID()
	e := &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
	if id != "" {
		if v, ok, err := n.store.Meta(metaNodePrefix + string(id)); err == nil && ok {
			e.LeaderHTTPAddr = string(v)
		}
	}
	return e
}
