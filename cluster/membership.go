package cluster

import (
	"context"
	"fmt"
	"sort"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// Server is one member of the Raft configuration.
type Server struct {
	ID       string
	RaftAddr string
	HTTPAddr string // from the replicated node metadata; empty if never registered
	Voter    bool
	Leader   bool
}

// Configuration returns the latest Raft configuration and the log index of
// the newest configuration entry this process has applied (0 when it has
// only seen the configuration through a snapshot: hashicorp/raft does not
// expose that index).
func (n *Node) Configuration() ([]Server, uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("get raft configuration: %w", err)
	}
	_, leaderID := n.raft.LeaderWithID()
	var out []Server
	for _, s := range f.Configuration().Servers {
		srv := Server{
			ID:       string(s.ID),
			RaftAddr: string(s.Address),
			Voter:    s.Suffrage == raft.Voter,
			Leader:   s.ID == leaderID,
		}
		if v, ok, err := n.store.Meta(metaNodePrefix + srv.ID); err == nil && ok {
			srv.HTTPAddr = string(v)
		}
		out = append(out, srv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, n.sm.configIndex.Load(), nil
}

// JoinRequest describes a server asking to join.
type JoinRequest struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	// Fresh: the server has no Raft state (new, or its data dir was wiped).
	// A fresh server that reuses a member's ID must not keep that member's
	// vote: it may have lost the log and the vote it promised.
	Fresh bool
	// Auto: the server's own watchdog asks to be re-added after noticing it
	// was removed. Refused (ErrLeftCluster) for a server that left
	// gracefully: leaving is the operator's decision.
	Auto bool
}

// metaLeftPrefix marks servers that left gracefully: metaLeftPrefix+ID.
const metaLeftPrefix = "node/left/"

// Join adds a server on the leader, as a non-voter: the failure detector
// promotes it to voter once it has caught up and stayed healthy for
// ServerStabilizationTime, so an empty or slow newcomer never weakens the
// quorum. Join is idempotent: the same ID at the same address changes
// nothing (its HTTP address is still refreshed); the same ID at a new
// address is updated; another ID holding the same address is removed first;
// a fresh server reusing a member's ID replaces that entry.
func (n *Node) Join(ctx context.Context, req JoinRequest) error {
	id, raftAddr := req.ID, req.RaftAddr
	if id == "" || raftAddr == "" {
		return fmt.Errorf("%w: join needs an id and a raft address", ErrBadRequest)
	}
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if id == n.cfg.ID {
		if raftAddr != n.cfg.advertise() {
			return fmt.Errorf("%w: %s is the leader's own id", ErrBadRequest, id)
		}
		return nil
	}
	if _, left, err := n.store.Meta(metaLeftPrefix + id); err == nil && left {
		if req.Auto {
			return fmt.Errorf("%w: %s", ErrLeftCluster, id)
		}
		if _, err := n.Apply(ctx, fsm.Command{Op: fsm.OpDeleteMeta, Key: metaLeftPrefix + id}); err != nil {
			return fmt.Errorf("clear left marker of %s: %w", id, err)
		}
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("get raft configuration: %w", err)
	}
	present, sameAddr := false, false
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == id:
			present, sameAddr = true, string(s.Address) == raftAddr
		case string(s.Address) == raftAddr:
			n.log.Info("join: removing stale server holding the same address", "stale_id", s.ID, "addr", raftAddr, "new_id", id)
			if err := n.await(n.raft.RemoveServer(s.ID, 0, n.cfg.ApplyTimeout)); err != nil {
				return n.classifyApplyError(fmt.Errorf("remove stale server %s: %w", s.ID, err))
			}
		}
	}
	if present && req.Fresh {
		n.log.Warn("join: server rejoins with an empty data dir under a member's id; replacing its entry", "id", id)
		if err := n.await(n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout)); err != nil {
			return n.classifyApplyError(fmt.Errorf("remove old entry of %s: %w", id, err))
		}
		present = false
	}
	switch {
	case present && sameAddr:
	case present:
		n.log.Info("join: updating address", "id", id, "raft_addr", raftAddr)
		if err := n.await(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, n.cfg.ApplyTimeout)); err != nil {
			return n.classifyApplyError(fmt.Errorf("update address of %s: %w", id, err))
		}
	default:
		n.log.Info("join: adding server as non-voter", "id", id, "raft_addr", raftAddr, "http_addr", req.HTTPAddr)
		if err := n.await(n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, n.cfg.ApplyTimeout)); err != nil {
			return n.classifyApplyError(fmt.Errorf("add server %s: %w", id, err))
		}
	}
	if req.HTTPAddr != "" {
		cur, ok, err := n.store.Meta(metaNodePrefix + id)
		if err != nil || !ok || string(cur) != req.HTTPAddr {
			cmd := fsm.Command{Op: fsm.OpSetMeta, Key: metaNodePrefix + id, Value: []byte(req.HTTPAddr)}
			if _, err := n.Apply(ctx, cmd); err != nil {
				return fmt.Errorf("record http address of %s: %w", id, err)
			}
		}
	}
	return nil
}

// Fresh reports whether this node started with no Raft state and has not
// received any since.
func (n *Node) Fresh() bool { return n.fresh && n.raft.LastIndex() == 0 }

// Remove takes a server out of the configuration, on the leader. Removing
// the leader itself first hands leadership to another voter and then
// returns a *NotLeaderError, so the caller retries on the new leader.
// graceful (a leave) records that the server left on purpose, so its own
// watchdog does not re-add it; a plain remove (of a dead server) does not.
func (n *Node) Remove(ctx context.Context, id string, graceful bool) error {
	if id == "" {
		return fmt.Errorf("%w: remove needs an id", ErrBadRequest)
	}
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	servers, _, err := n.Configuration()
	if err != nil {
		return err
	}
	found := false
	for _, s := range servers {
		if s.ID == id {
			found = true
		}
	}
	if !found {
		if graceful {
			return nil // already gone: a repeated leave succeeds
		}
		return fmt.Errorf("%w: %s", ErrUnknownServer, id)
	}
	if id == n.cfg.ID {
		if n.otherVoters() == 0 {
			return fmt.Errorf("%w: cannot remove the only voter", ErrBadRequest)
		}
		if err := n.transferLeadership(ctx); err != nil {
			return fmt.Errorf("%w: hand over leadership before leaving: %w", ErrNoLeader, err)
		}
		return n.notLeader()
	}
	if graceful {
		cmd := fsm.Command{Op: fsm.OpSetMeta, Key: metaLeftPrefix + id, Value: []byte("1")}
		if _, err := n.Apply(ctx, cmd); err != nil {
			return fmt.Errorf("mark %s as left: %w", id, err)
		}
	}
	n.log.Info("removing server", "id", id, "graceful", graceful)
	if err := n.await(n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout)); err != nil {
		return n.classifyApplyError(fmt.Errorf("remove server %s: %w", id, err))
	}
	cmd := fsm.Command{Op: fsm.OpDeleteMeta, Key: metaNodePrefix + id}
	if _, err := n.Apply(ctx, cmd); err != nil {
		n.log.Warn("forget http address of removed server", "id", id, "error", err)
	}
	return nil
}
