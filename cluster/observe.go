package cluster

import (
	"github.com/hashicorp/raft"
)

// observe consumes raft's observations: heartbeat failures and resumptions
// feed the failure detector; leader and peer changes are logged once each.
func (n *Node) observe() {
	ch := make(chan raft.Observation, 256)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation,
			raft.LeaderObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-ch:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				n.detector.heartbeatFailed(d.PeerID, d.LastContact)
			case raft.ResumedHeartbeatObservation:
				n.detector.heartbeatResumed(d.PeerID)
			case raft.LeaderObservation:
				n.recordLeader(d)
				n.log.Info("leader changed", "leader_id", d.LeaderID, "leader_addr", d.LeaderAddr, "term", n.raft.CurrentTerm())
			case raft.PeerObservation:
				n.detector.peerChanged(d.Peer.ID, d.Removed)
				n.log.Info("configuration changed", "peer", d.Peer.ID, "addr", d.Peer.Address, "removed", d.Removed, "suffrage", d.Peer.Suffrage.String())
			}
		}
	}
}
