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

// Join adds a server on the leader. It is idempotent: the same ID at the
// same address changes nothing (its HTTP address is still refreshed); the
// same ID at a new address is updated; another ID holding the same address
// (a replaced machine) is removed first. The new server joins as a voter.
func (n *Node) Join(ctx context.Context, id, raftAddr, httpAddr string) error {
	if id == "" || raftAddr == "" {
		return fmt.Errorf("%w: join needs an id and a raft address", ErrBadRequest)
	}
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("get raft configuration: %w", err)
	}
	already := false
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == id && string(s.Address) == raftAddr:
			already = true
		case string(s.ID) != id && string(s.Address) == raftAddr:
			n.log.Info("join: removing stale server holding the same address", "stale_id", s.ID, "addr", raftAddr, "new_id", id)
			if err := n.await(n.raft.RemoveServer(s.ID, 0, n.cfg.ApplyTimeout)); err != nil {
				return n.classifyApplyError(fmt.Errorf("remove stale server %s: %w", s.ID, err))
			}
		}
	}
	if !already {
		n.log.Info("join: adding server", "id", id, "raft_addr", raftAddr, "http_addr", httpAddr)
		if err := n.await(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, n.cfg.ApplyTimeout)); err != nil {
			return n.classifyApplyError(fmt.Errorf("add server %s: %w", id, err))
		}
	}
	if httpAddr != "" {
		cur, ok, err := n.store.Meta(metaNodePrefix + id)
		if err != nil || !ok || string(cur) != httpAddr {
			cmd := fsm.Command{Op: fsm.OpSetMeta, Key: metaNodePrefix + id, Value: []byte(httpAddr)}
			if _, err := n.Apply(ctx, cmd); err != nil {
				return fmt.Errorf("record http address of %s: %w", id, err)
			}
		}
	}
	return nil
}

// Remove takes a server out of the configuration, on the leader. Removing
// the leader itself first hands leadership to another voter and then
// returns a *NotLeaderError, so the caller retries on the new leader.
func (n *Node) Remove(ctx context.Context, id string) error {
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
	n.log.Info("removing server", "id", id)
	if err := n.await(n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout)); err != nil {
		return n.classifyApplyError(fmt.Errorf("remove server %s: %w", id, err))
	}
	cmd := fsm.Command{Op: fsm.OpDeleteMeta, Key: metaNodePrefix + id}
	if _, err := n.Apply(ctx, cmd); err != nil {
		n.log.Warn("forget http address of removed server", "id", id, "error", err)
	}
	return nil
}

// IsMember reports whether this node is in its latest known configuration.
func (n *Node) IsMember() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.ID {
			return true
		}
	}
	return false
}
