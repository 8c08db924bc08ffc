package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// watchDiskStall guards against a leader whose disk has stalled: raft's
// heartbeats run on their own goroutine and keep followers from electing
// anyone, while no write can commit because the leader cannot persist its
// log. Every 250ms the watchdog looks at the oldest write still waiting for
// its commit (no probe writes: an idle cluster's log does not grow); if it
// has waited longer than DiskStallTimeout while the failure detector reaches
// a quorum of followers, the leader hands leadership over, and if even that
// cannot run (the leader loop is stuck in the disk write), it stops
// heartbeating by closing its Raft transport so the followers elect a new
// leader. The node then needs a restart, which a supervisor provides.
func (n *Node) watchDiskStall(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		oldest := n.pending.oldest()
		if oldest.IsZero() || time.Since(oldest) < n.cfg.DiskStallTimeout {
			continue
		}
		if n.raft.State() != raft.Leader || !n.quorumReachable() {
			// Followers are unreachable: a partition, not our disk.
			continue
		}
		n.log.Error("leader writes are not committing; stepping down", "oldest_write_waiting", time.Since(oldest).Round(time.Millisecond))
		tctx, cancel := context.WithTimeout(ctx, n.cfg.DiskStallTimeout)
		err := n.transferLeadership(tctx)
		cancel()
		if err == nil {
			return
		}
		n.log.Error("leadership transfer failed during disk stall; closing raft transport so followers elect a new leader", "error", err)
		_ = n.trans.Close()
		return
	}
}

// pendingWrites tracks when each write still waiting for its commit was
// proposed.
type pendingWrites struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]time.Time
}

func (p *pendingWrites) add() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[uint64]time.Time{}
	}
	p.next++
	p.m[p.next] = time.Now()
	return p.next
}

func (p *pendingWrites) done(id uint64) {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
}

func (p *pendingWrites) oldest() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var o time.Time
	for _, t := range p.m {
		if o.IsZero() || t.Before(o) {
			o = t
		}
	}
	return o
}

// quorumReachable reports whether the failure detector reaches a majority
// of voters (counting this leader).
func (n *Node) quorumReachable() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, reach := 0, 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == n.cfg.ID || n.detector.reachable(s.ID) {
			reach++
		}
	}
	return reach > voters/2
}
