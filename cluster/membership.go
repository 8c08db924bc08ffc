package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

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
// nothing (its HTTP address is still refreshed); a fresh server reusing a
// member's ID at that member's address replaces that entry.
//
// A join must not take a live member's place: the same ID at a new address
// is updated (keeping its suffrage), and another ID holding the same address
// is removed first, only when the leader cannot reach the member in
// question (see peerAlive); otherwise the join fails with ErrMemberConflict
// and changes nothing (a server that really moved retries until the leader
// sees its old address dead). A malformed ID or address is ErrBadRequest.
func (n *Node) Join(ctx context.Context, req JoinRequest) error {
	id, raftAddr := req.ID, req.RaftAddr
	if err := validateJoin(req); err != nil {
		return err
	}
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if id == n.cfg.ID {
		if raftAddr != n.cfg.advertise() {
			return fmt.Errorf("%w: %w: %s is the leader's own id", ErrBadRequest, ErrMemberConflict, id)
		}
		return nil
	}
	if raftAddr == n.cfg.advertise() {
		return fmt.Errorf("%w: %w: %s is the leader's own raft address", ErrBadRequest, ErrMemberConflict, raftAddr)
	}
	_, left, err := n.store.Meta(metaLeftPrefix + id)
	left = left && err == nil
	if left && req.Auto {
		return fmt.Errorf("%w: %s", ErrLeftCluster, id)
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("get raft configuration: %w", err)
	}
	// Decide first, change after: a refused join must change nothing.
	present, sameAddr := false, false
	var oldAddr raft.ServerAddress
	var stale []raft.ServerID // other IDs holding the address, unreachable
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == id:
			present, sameAddr, oldAddr = true, string(s.Address) == raftAddr, s.Address
		case string(s.Address) == raftAddr:
			if n.detector.peerAlive(s.ID) {
				return fmt.Errorf("%w: %w: raft address %s belongs to live server %s; remove %s first if it is gone",
					ErrBadRequest, ErrMemberConflict, raftAddr, s.ID, s.ID)
			}
			stale = append(stale, s.ID)
		}
	}
	if present && !sameAddr && n.detector.peerAlive(raft.ServerID(id)) {
		return fmt.Errorf("%w: %w: server %s is live at %s; it cannot move to %s while it answers there (stop it, or remove it first)",
			ErrBadRequest, ErrMemberConflict, id, oldAddr, raftAddr)
	}
	if left {
		if _, err := n.Apply(ctx, fsm.Command{Op: fsm.OpDeleteMeta, Key: metaLeftPrefix + id}); err != nil {
			return fmt.Errorf("clear left marker of %s: %w", id, err)
		}
	}
	for _, sid := range stale {
		n.log.Info("join: removing unreachable server holding the same address", "stale_id", sid, "addr", raftAddr, "new_id", id)
		if err := n.await(n.raft.RemoveServer(sid, 0, n.cfg.ApplyTimeout)); err != nil {
			return n.classifyApplyError(fmt.Errorf("remove stale server %s: %w", sid, err))
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
		// AddNonvoter on a member only changes its address: a voter stays a
		// voter, and a non-voter is not promoted before it is stable.
		n.log.Info("join: updating address of an unreachable server", "id", id, "old_raft_addr", oldAddr, "raft_addr", raftAddr)
		if err := n.await(n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, n.cfg.ApplyTimeout)); err != nil {
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

// ErrMemberConflict: a join would take the place of a live member (its ID at
// another address, or its address under another ID). Always wrapped together
// with ErrBadRequest; nothing was changed.
var ErrMemberConflict = errors.New("conflicts with a live member")

// Limits on what a join may register: IDs go into metadata keys and logs,
// addresses are dialled by every node.
const (
	maxServerIDLen = 128
	maxAddrLen     = 256
)

// validateJoin checks the shape of a join request: a non-empty, printable
// ID of at most maxServerIDLen bytes, a Raft address host:port that can be
// dialled (a host, a port in 1..65535, not an unspecified IP such as
// 0.0.0.0) and an optional HTTP address of the same form or an http(s) URL.
func validateJoin(req JoinRequest) error {
	if req.ID == "" || req.RaftAddr == "" {
		return fmt.Errorf("%w: join needs an id and a raft address", ErrBadRequest)
	}
	if len(req.ID) > maxServerIDLen {
		return fmt.Errorf("%w: server id is %d bytes, over the %d-byte limit", ErrBadRequest, len(req.ID), maxServerIDLen)
	}
	if !utf8.ValidString(req.ID) || strings.IndexFunc(req.ID, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return fmt.Errorf("%w: server id %q has spaces, control or invalid characters", ErrBadRequest, req.ID)
	}
	if err := checkDialAddr(req.RaftAddr); err != nil {
		return fmt.Errorf("%w: raft address %q: %w", ErrBadRequest, req.RaftAddr, err)
	}
	if a := req.HTTPAddr; a != "" {
		if strings.Contains(a, "://") {
			u, err := url.Parse(a)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%w: http address %q: want host:port or an http(s) URL", ErrBadRequest, a)
			}
			a = u.Host
		}
		if err := checkDialAddr(a); err != nil {
			return fmt.Errorf("%w: http address %q: %w", ErrBadRequest, req.HTTPAddr, err)
		}
	}
	return nil
}

// checkDialAddr checks that addr is a host:port other nodes can dial.
func checkDialAddr(addr string) error {
	if len(addr) > maxAddrLen {
		return fmt.Errorf("over %d bytes", maxAddrLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if host == "" || strings.IndexFunc(host, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return errors.New("bad or missing host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q: want 1..65535", port)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%s is not an address peers can dial", host)
	}
	return nil
}

// peerAlive reports whether the leader's failure detector currently reaches
// server id: raft's heartbeats to it are not failing and its last stats
// fetch succeeded. A server the detector has no verdict on yet (just after
// an election, or before its first stats fetch) counts as alive: refusing a
// join is safe (the joining server retries), taking a live member's place
// is not.
func (d *detector) peerAlive(id raft.ServerID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.peers[id]
	switch {
	case !ok:
		return true
	case p.hbFailing:
		return false
	case p.ok:
		return true
	default:
		return p.failingSince.IsZero() // no fetch has failed yet: no verdict
	}
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
