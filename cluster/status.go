package cluster

import (
	"time"

	"github.com/hashicorp/raft"
)

// Status is this node's view of itself and the cluster.
type Status struct {
	ID             string
	RaftAddr       string
	HTTPAddr       string
	State          string // Leader, Follower, Candidate, Shutdown
	Term           uint64
	LeaderID       string
	LeaderAddr     string
	LeaderHTTPAddr string
	LastIndex      uint64
	LastLogTerm    uint64
	CommitIndex    uint64
	AppliedIndex   uint64 // the state machine's, not raft's
	LastContact    time.Duration
	Voter          bool
	Member         bool
	ReadReady      bool   // leader whose read barrier for this term is applied
	SnapshotsTaken uint64 // by this process
	Restores       uint64 // snapshots restored into the state machine by this process
	Disk           DiskStatus
}

// Status reports the node's current state without any network round trip.
func (n *Node) Status() Status {
	s := Status{
		ID:             n.cfg.ID,
		RaftAddr:       n.cfg.advertise(),
		HTTPAddr:       n.cfg.HTTPAddr,
		State:          n.raft.State().String(),
		Term:           n.raft.CurrentTerm(),
		LastIndex:      n.raft.LastIndex(),
		LastLogTerm:    n.SelfStats().LastTerm,
		CommitIndex:    n.raft.CommitIndex(),
		AppliedIndex:   n.sm.appliedIndex(),
		LastContact:    n.LastContact(),
		SnapshotsTaken: n.sm.snapshots.Load(),
		Restores:       n.sm.restores.Load() + n.startRestores,
		Disk:           n.disk.status(),
	}
	if le, ok := n.notLeader().(*NotLeaderError); ok {
		s.LeaderID, s.LeaderAddr, s.LeaderHTTPAddr = le.LeaderID, le.LeaderAddr, le.LeaderHTTPAddr
	}
	s.ReadReady = n.raft.State() == raft.Leader && n.readyForTerm(s.Term)
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if string(srv.ID) == n.cfg.ID {
				s.Member = true
				s.Voter = srv.Suffrage == raft.Voter
			}
		}
	}
	return s
}

// LastContact is the time since this node last heard from the leader; zero
// on the leader itself.
func (n *Node) LastContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	lc := n.raft.LastContact()
	if lc.IsZero() {
		return -1
	}
	return time.Since(lc)
}

// KnownLeader reports whether this node knows a leader.
func (n *Node) KnownLeader() bool {
	addr, _ := n.raft.LeaderWithID()
	return addr != ""
}

// AppliedIndex is the state machine's applied index.
func (n *Node) AppliedIndex() uint64 { return n.sm.appliedIndex() }

// Leader returns the current leader's ID, Raft address and HTTP address, as
// far as this node knows; empty strings when unknown.
func (n *Node) Leader() (id, raftAddr, httpAddr string) {
	if le, ok := n.notLeader().(*NotLeaderError); ok {
		return le.LeaderID, le.LeaderAddr, le.LeaderHTTPAddr
	}
	return "", "", ""
}

// RaftAddr is the address peers dial to reach this node.
func (n *Node) RaftAddr() string { return n.cfg.advertise() }
