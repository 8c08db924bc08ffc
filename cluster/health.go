package cluster

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// PeerStats is what a server reports about itself, fetched by the leader's
// failure detector (Consul's RaftStats).
type PeerStats struct {
	LastContact time.Duration // since the server last heard from the leader; -1 never
	LastTerm    uint64        // term of its last log entry
	LastIndex   uint64        // index of its last log entry
	// Disk: the server's free disk space, its reserve and whether it is
	// below it (refusing writes). Zero from a server that does not report
	// them (an older version): counted as not low.
	DiskFree, DiskReserve uint64
	DiskLow               bool
}

// StatsFetcher asks the server at httpAddr for its PeerStats. The cluster
// package speaks no HTTP; cmd/raftkv wires one built on the HTTP client.
type StatsFetcher func(ctx context.Context, httpAddr string) (PeerStats, error)

// ServerHealth is one server's entry in the leader's health view, in
// Consul's autopilot shape.
type ServerHealth struct {
	ID          string
	Address     string
	HTTPAddr    string
	Leader      bool
	Voter       bool
	Healthy     bool
	Reachable   bool // the last stats fetch succeeded
	LastContact time.Duration
	LastTerm    uint64
	LastIndex   uint64
	Lag         uint64 // leader's last index minus this server's
	StableSince time.Time
}

// Health is the leader's view of the cluster's health.
type Health struct {
	Healthy          bool
	FailureTolerance int
	Leader           string
	Servers          []ServerHealth
}

// SelfStats reports this node's own PeerStats.
func (n *Node) SelfStats() PeerStats {
	term, _ := strconv.ParseUint(n.raft.Stats()["last_log_term"], 10, 64)
	ds := n.disk.status()
	return PeerStats{LastContact: n.LastContact(), LastTerm: term, LastIndex: n.raft.LastIndex(),
		DiskFree: ds.FreeBytes, DiskReserve: ds.ReserveBytes, DiskLow: ds.Low}
}

// Health returns the leader's health view; on a follower a *NotLeaderError.
func (n *Node) Health() (Health, error) {
	if n.raft.State() != raft.Leader {
		return Health{}, n.notLeader()
	}
	st := n.detector.ap.GetState()
	if st == nil {
		return Health{}, fmt.Errorf("%w: failure detector has no state yet", ErrNotReady)
	}
	leaderLast := n.raft.LastIndex()
	h := Health{Healthy: st.Healthy, FailureTolerance: st.FailureTolerance, Leader: string(st.Leader)}
	for id, s := range st.Servers {
		sh := ServerHealth{
			ID: string(id), Address: string(s.Server.Address), Leader: s.State == autopilot.RaftLeader,
			Voter: s.HasVotingRights(), Healthy: s.Health.Healthy, StableSince: s.Health.StableSince,
			LastContact: s.Stats.LastContact, LastTerm: s.Stats.LastTerm, LastIndex: s.Stats.LastIndex,
			Reachable: n.detector.reachable(id),
		}
		if leaderLast > s.Stats.LastIndex {
			sh.Lag = leaderLast - s.Stats.LastIndex
		}
		if v, ok, err := n.store.Meta(metaNodePrefix + sh.ID); err == nil && ok {
			sh.HTTPAddr = string(v)
		}
		h.Servers = append(h.Servers, sh)
	}
	sort.Slice(h.Servers, func(i, j int) bool { return h.Servers[i].ID < h.Servers[j].ID })
	return h, nil
}

// detector is the leader's failure detector: raft-autopilot fed with each
// server's own stats (fetched over HTTP every UpdateInterval) and raft's
// heartbeat observations. Autopilot also promotes stable non-voters and, if
// enabled, removes dead voters within its quorum limits. It runs only while
// this node leads.
type detector struct {
	n  *Node
	ap *autopilot.Autopilot

	mu      sync.Mutex
	peers   map[raft.ServerID]*peerTrack
	healthy map[raft.ServerID]bool      // last health seen, to log transitions once
	since   map[raft.ServerID]time.Time // when each server's health last changed
	started time.Time

	// diskQuorum is non-nil while a quorum of voters reports low disk
	// space (noteDiskQuorum); Apply refuses writes meanwhile.
	diskQuorum atomic.Pointer[DiskFullError]
}

type peerTrack struct {
	lastOK       time.Time // last successful stats fetch
	firstSeen    time.Time
	stats        autopilot.ServerStats
	disk         peerDisk // from the last successful stats fetch
	ok           bool
	hbFailing    bool      // heartbeats failing per raft's observations
	failingSince time.Time // start of the current unreachable episode
}

func newDetector(n *Node) *detector {
	d := &detector{n: n, peers: map[raft.ServerID]*peerTrack{}, healthy: map[raft.ServerID]bool{}, since: map[raft.ServerID]time.Time{}}
	d.ap = autopilot.New(n.raft, d,
		autopilot.WithLogger(newRaftLogger(n.log).Named("autopilot")),
		autopilot.WithUpdateInterval(n.cfg.HealthInterval),
		autopilot.WithReconcileInterval(n.cfg.HealthInterval*2),
		autopilot.WithPromoter(autopilot.DefaultPromoter()),
	)
	return d
}

func (d *detector) start(ctx context.Context) {
	d.mu.Lock()
	d.peers = map[raft.ServerID]*peerTrack{}
	d.healthy = map[raft.ServerID]bool{}
	d.since = map[raft.ServerID]time.Time{}
	d.started = time.Now()
	d.diskQuorum.Store(nil)
	d.mu.Unlock()
	d.ap.Start(ctx)
}

func (d *detector) stop() { <-d.ap.Stop() }

func (d *detector) track(id raft.ServerID) *peerTrack {
	p, ok := d.peers[id]
	if !ok {
		p = &peerTrack{firstSeen: time.Now()}
		d.peers[id] = p
	}
	return p
}

func (d *detector) reachable(id raft.ServerID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.peers[id]
	return ok && p.ok && !p.hbFailing
}

// AutopilotConfig implements autopilot.ApplicationIntegration.
func (d *detector) AutopilotConfig() *autopilot.Config {
	c := d.n.cfg
	return &autopilot.Config{
		CleanupDeadServers:      c.DeadNodeTimeout > 0,
		LastContactThreshold:    c.HealthContactThreshold,
		MaxTrailingLogs:         c.HealthMaxLag,
		MinQuorum:               c.MinQuorum,
		ServerStabilizationTime: c.ServerStabilizationTime,
	}
}

// KnownServers implements autopilot.ApplicationIntegration: every server in
// the Raft configuration, failed once unreachable for DeadNodeTimeout.
func (d *detector) KnownServers() map[raft.ServerID]*autopilot.Server {
	f := d.n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	_, leaderID := d.n.raft.LeaderWithID()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[raft.ServerID]*autopilot.Server{}
	now := time.Now()
	for _, s := range f.Configuration().Servers {
		status := autopilot.NodeAlive
		if dead := d.n.cfg.DeadNodeTimeout; dead > 0 && string(s.ID) != d.n.cfg.ID {
			p := d.track(s.ID)
			if !p.ok && !p.failingSince.IsZero() && now.Sub(p.failingSince) > dead {
				status = autopilot.NodeFailed
			}
		}
		out[s.ID] = &autopilot.Server{
			ID: s.ID, Name: string(s.ID), Address: s.Address, NodeStatus: status,
			IsLeader: s.ID == leaderID, NodeType: autopilot.NodeVoter, RaftVersion: raft.ProtocolVersionMax,
		}
	}
	return out
}

// FetchServerStats implements autopilot.ApplicationIntegration. A server
// that does not answer keeps its last stats but with LastContact growing
// from its last answer, so it turns unhealthy within the contact threshold.
func (d *detector) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	type result struct {
		id    raft.ServerID
		stats PeerStats
		err   error
	}
	results := make(chan result, len(servers))
	var wg sync.WaitGroup
	for id := range servers {
		if string(id) == d.n.cfg.ID {
			results <- result{id: id, stats: d.n.SelfStats()}
			continue
		}
		addr, ok, err := d.n.store.Meta(metaNodePrefix + string(id))
		if err != nil || !ok || d.n.cfg.FetchStats == nil {
			results <- result{id: id, err: fmt.Errorf("no http address known for %s", id)}
			continue
		}
		wg.Go(func() {
			st, err := d.n.cfg.FetchStats(ctx, string(addr))
			results <- result{id: id, stats: st, err: err}
		})
	}
	wg.Wait()
	close(results)

	conf := d.n.raft.GetConfiguration() // before d.mu: it waits for raft's main loop
	now := time.Now()
	out := map[raft.ServerID]*autopilot.ServerStats{}
	d.mu.Lock()
	defer d.mu.Unlock()
	for r := range results {
		p := d.track(r.id)
		if r.err == nil {
			if !p.ok && !p.failingSince.IsZero() {
				d.n.log.Info("node reachable again", "peer", r.id, "unreachable_for", now.Sub(p.failingSince).Round(time.Millisecond))
			}
			p.ok, p.lastOK, p.failingSince = true, now, time.Time{}
			p.stats = autopilot.ServerStats{LastContact: r.stats.LastContact, LastTerm: r.stats.LastTerm, LastIndex: r.stats.LastIndex}
			p.disk = peerDisk{low: r.stats.DiskLow, free: r.stats.DiskFree, reserve: r.stats.DiskReserve}
		} else {
			if p.ok || p.failingSince.IsZero() {
				p.failingSince = now
				if p.ok {
					d.n.log.Warn("node unreachable", "peer", r.id, "since", now, "error", r.err)
				}
			}
			p.ok = false
			since := p.lastOK
			if since.IsZero() {
				since = p.firstSeen
			}
			p.stats.LastContact = now.Sub(since)
		}
		s := p.stats
		if p.hbFailing && s.LastContact <= d.n.cfg.HealthContactThreshold {
			s.LastContact = d.n.cfg.HealthContactThreshold + 1 // raft cannot reach it either
		}
		out[r.id] = &s
	}
	if conf.Error() == nil {
		d.noteDiskQuorum(conf.Configuration())
	}
	return out
}

// NotifyState implements autopilot.ApplicationIntegration: it logs each
// health transition once, and it corrects StableSince. raft-autopilot
// v0.3.0 compares a server's new health with a pointer to the field it has
// just overwritten, so StableSince is set when a server is first seen and
// never again; the stable promoter would then promote a re-added or
// flapping non-voter as soon as it is healthy. The detector keeps its own
// time of each server's last health change and writes it into the state
// (NotifyState runs under autopilot's state lock, before the promoter reads
// the state).
func (d *detector) NotifyState(st *autopilot.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for id, s := range st.Servers {
		prev, seen := d.healthy[id]
		if !seen || prev != s.Health.Healthy {
			d.since[id] = now
		}
		s.Health.StableSince = d.since[id]
		if seen && prev == s.Health.Healthy {
			continue
		}
		d.healthy[id] = s.Health.Healthy
		switch {
		case !s.Health.Healthy:
			d.n.log.Warn("node unhealthy", "peer", id, "since", s.Health.StableSince, "last_contact", s.Stats.LastContact,
				"last_index", s.Stats.LastIndex, "term", s.Stats.LastTerm, "voter", s.HasVotingRights())
		case seen:
			d.n.log.Info("node healthy again", "peer", id, "since", s.Health.StableSince, "voter", s.HasVotingRights())
		}
	}
}

// RemoveFailedServer implements autopilot.ApplicationIntegration: called
// for a server dead longer than DeadNodeTimeout, within autopilot's limits
// (never more than (voters-1)/2 at once, never below MinQuorum).
func (d *detector) RemoveFailedServer(s *autopilot.Server) {
	d.n.log.Warn("removing dead node", "peer", s.ID, "dead_node_timeout", d.n.cfg.DeadNodeTimeout)
	if err := d.n.await(d.n.raft.RemoveServer(s.ID, 0, d.n.cfg.ApplyTimeout)); err != nil {
		d.n.log.Warn("remove dead node", "peer", s.ID, "error", err)
		return
	}
	d.mu.Lock()
	delete(d.peers, s.ID)
	delete(d.healthy, s.ID)
	delete(d.since, s.ID)
	d.mu.Unlock()
}

// peerChanged runs when raft adds a server to, or removes it from, the
// replication set (a join, a leave, a re-add). raft then runs a fresh
// replication and heartbeat goroutine for it, which reports only its own
// failures, so a "heartbeats failing" state left by the previous one would
// never see its "resumed" and would keep the server unhealthy for ever: a
// node killed just as it left, then re-added, stayed a non-voter (found by
// the kill -9 loops in cmd/raftkv/e2e_crash_test.go).
//
// A removed server's health history is forgotten too: if it comes back, its
// stabilization time counts from its return, not from when it was first
// seen before the removal (a node removed while frozen and re-added was
// promoted to voter at once).
func (d *detector) peerChanged(id raft.ServerID, removed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if removed {
		delete(d.healthy, id)
		delete(d.since, id)
	}
	if p, ok := d.peers[id]; ok && p.hbFailing {
		p.hbFailing = false
		d.n.log.Info("heartbeats to node: state reset, raft restarted its replication", "peer", id)
	}
}

// heartbeatFailed and heartbeatResumed feed raft's own observations in.
func (d *detector) heartbeatFailed(id raft.ServerID, lastContact time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.track(id)
	if !p.hbFailing {
		p.hbFailing = true
		d.n.log.Warn("heartbeats to node failing", "peer", id, "last_contact", lastContact)
	}
}

func (d *detector) heartbeatResumed(id raft.ServerID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.track(id)
	if p.hbFailing {
		p.hbFailing = false
		d.n.log.Info("heartbeats to node resumed", "peer", id)
	}
}
