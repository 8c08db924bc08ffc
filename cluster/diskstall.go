package cluster

import (
	"context"
	"fmt"
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
	const every = 250 * time.Millisecond
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := time.Now()
	resumed := last // writes are timed from here at the earliest
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			// A tick far later than due means this whole process was
			// stopped (SIGSTOP, a VM pause), not its disk: writes waited
			// because nothing ran. Start timing afresh.
			if now.Sub(last) > 4*every {
				resumed = now
			}
			last = now
		}
		oldest := n.pending.oldest()
		if oldest.IsZero() {
			continue
		}
		if oldest.Before(resumed) {
			oldest = resumed
		}
		if time.Since(oldest) < n.cfg.DiskStallTimeout {
			continue
		}
		if n.raft.State() != raft.Leader || !n.quorumReachable() {
			// Not leading any more, or followers unreachable: a
			// partition, not our disk.
			continue
		}
		n.log.Error("leader writes are not committing; stepping down", "oldest_write_waiting", time.Since(oldest).Round(time.Millisecond))
		tctx, cancel := context.WithTimeout(ctx, n.cfg.DiskStallTimeout)
		err := n.transferLeadership(tctx)
		cancel()
		if err == nil || ctx.Err() != nil || n.raft.State() != raft.Leader {
			return // handed over, or leadership already gone
		}
		// The leader loop itself is stuck (in the disk write), so it cannot
		// even hand over. Stop heartbeating so the followers elect a new
		// leader, and report the node as failed: the process must restart.
		n.log.Error("leadership transfer failed during disk stall; closing raft transport", "error", err)
		_ = n.trans.Close()
		if n.cfg.OnFatal != nil {
			n.cfg.OnFatal(fmt.Errorf("disk stall: writes not committing for over %s and leadership transfer failed: %w", n.cfg.DiskStallTimeout, err))
		}
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
