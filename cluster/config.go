package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Config configures a Node. Build one with DefaultConfig and override fields;
// Open calls Validate.
type Config struct {
	// ID is this server's Raft ID, unique in the cluster. Required.
	ID string
	// DataDir holds the Raft log, snapshots and the state machine. Required.
	DataDir string
	// RaftAddr is the TCP address the Raft transport binds. Required.
	RaftAddr string
	// RaftAdvertise is the address peers dial; empty = RaftAddr (which must
	// then not be an unspecified address such as 0.0.0.0).
	RaftAdvertise string
	// HTTPAddr is this node's client API address, registered in the
	// replicated node metadata so followers can forward to the leader.
	HTTPAddr string
	// Bootstrap forms a new single-server cluster, only when DataDir holds no
	// Raft state. Ignored (with a log line) on a node that has state.
	Bootstrap bool

	// HeartbeatTimeout: a follower with no contact from the leader for this
	// long starts a (pre-)election. Default 200ms.
	HeartbeatTimeout time.Duration
	// ElectionTimeout: a candidate with no result for this long retries.
	// Default 200ms.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: a leader that cannot reach a quorum for this long
	// steps down. Default 100ms; must not exceed HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: the longest the leader waits before sending a follower
	// an AppendEntries with no new write to trigger it. It paces two things:
	// how soon followers learn the commit index when writes pause (which
	// follower reads wait for), and how fast a lagging follower catches up
	// from the log, since hashicorp/raft's pipeline sends one batch of
	// MaxAppendEntries per trigger. Default 10ms: a follower that missed
	// 100k writes catches up in seconds instead of ~15s at raft's 50ms, for
	// ~0.03 cores more idle CPU per node.
	CommitTimeout time.Duration
	// ApplyTimeout bounds how long a write waits for its commit before the
	// outcome is reported unknown. Default 5s.
	ApplyTimeout time.Duration
	// SnapshotThreshold: take a snapshot after this many new log entries.
	// Default 8192.
	SnapshotThreshold uint64
	// SnapshotInterval: how often to check SnapshotThreshold. Default 30s.
	SnapshotInterval time.Duration
	// TrailingLogs: log entries kept after a snapshot, so a briefly absent
	// follower catches up from the log, not a snapshot. Default 10240.
	TrailingLogs uint64
	// MaxAppendEntries: entries per AppendEntries RPC and per group commit.
	// Default 512.
	MaxAppendEntries int
	// WriteBatchInflight: how many coalesced write batches the leader keeps
	// proposed and not yet applied (batcher.go); writes arriving meanwhile
	// wait and go out together. 0 = no coalescing: every write is its own
	// entry. Default 1.
	WriteBatchInflight int
	// FSMCommitInterval: how long applied entries may wait in the state
	// machine's open bbolt transaction before it is committed (fsync) when
	// nothing reads them sooner (fsm_adapter.go). Writes are acknowledged
	// once committed in the Raft log and applied, not after this commit;
	// every read of the store commits first, so reads see every applied
	// entry; watches may wake up to this late. 0 = commit every batch
	// before answering. Default 20ms.
	FSMCommitInterval time.Duration
	// SnapshotRetain: snapshots kept on disk. Default 2.
	SnapshotRetain int
	// ServerStabilizationTime: a joining server stays a non-voter until it has
	// been healthy this long. Default 10s.
	ServerStabilizationTime time.Duration
	// DeadNodeTimeout: a voter unhealthy for longer is removed; 0 = off
	// (default).
	DeadNodeTimeout time.Duration

	// HealthInterval: how often the leader's failure detector refreshes every
	// server's stats. Default 250ms.
	HealthInterval time.Duration
	// HealthContactThreshold: a server whose last contact with the leader is
	// older than this is unhealthy. Default 200ms.
	HealthContactThreshold time.Duration
	// HealthMaxLag: a server more than this many entries behind the leader
	// is unhealthy. Default 250.
	HealthMaxLag uint64
	// MinQuorum: dead-node cleanup never shrinks the voters below this.
	// 0 = no floor beyond autopilot's own (never remove more than
	// (voters-1)/2 at once).
	MinQuorum uint
	// FetchStats asks another server for its PeerStats (cmd/raftkv wires it
	// over HTTP). nil = only raft's heartbeat signals feed the detector.
	FetchStats StatsFetcher
	// DiskStallTimeout: a leader whose own writes do not commit for this long
	// while its followers are reachable steps down. Default 2s; 0 = off.
	DiskStallTimeout time.Duration
	// MinFreeDisk: while the data dir's filesystem has less free space than
	// this, the node refuses writes (ErrDiskFull) and keeps serving reads;
	// writes resume once free space is back above it plus 1/8. The leader
	// also refuses while a quorum of voters is below. Default 64MB; 0 = off.
	MinFreeDisk ByteSize

	// DialOverride maps a peer address this node would dial (host:port) to
	// the address it dials instead, for Raft traffic. jepsen-lite uses it to
	// route every node-to-node link through a proxy it can cut. nil = none.
	DialOverride map[string]string

	// TLS, when not nil, runs Raft traffic over mutually authenticated TLS
	// (see TransportTLS). Peers' certificates are checked against their
	// advertised Raft host, also when DialOverride redirects the dial.
	TLS *TransportTLS

	// OnFatal is called when the node can no longer work correctly and the
	// process should exit so a supervisor restarts it (a stalled disk that
	// kept a leader from handing over). nil = only log.
	OnFatal func(error)

	// Logger receives structured logs, including hashicorp/raft's own;
	// nil = slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every tunable at its default; the
// identity fields (ID, DataDir, RaftAddr, HTTPAddr) are left empty.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:        200 * time.Millisecond,
		ElectionTimeout:         200 * time.Millisecond,
		LeaderLeaseTimeout:      100 * time.Millisecond,
		CommitTimeout:           10 * time.Millisecond,
		ApplyTimeout:            5 * time.Second,
		SnapshotThreshold:       8192,
		SnapshotInterval:        30 * time.Second,
		TrailingLogs:            10240,
		MaxAppendEntries:        512,
		WriteBatchInflight:      1,
		FSMCommitInterval:       20 * time.Millisecond,
		SnapshotRetain:          2,
		ServerStabilizationTime: 10 * time.Second,
		HealthInterval:          250 * time.Millisecond,
		HealthContactThreshold:  200 * time.Millisecond,
		HealthMaxLag:            250,
		DiskStallTimeout:        2 * time.Second,
		MinFreeDisk:             64 << 20,
	}
}

// Validate reports the first problem with c, or nil.
func (c Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("id is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, errors.New("raft address is required"))
	} else if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		errs = append(errs, fmt.Errorf("raft address %q: %w", c.RaftAddr, err))
	}
	adv := c.advertise()
	if host, _, err := net.SplitHostPort(adv); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			errs = append(errs, fmt.Errorf("raft advertise address %q is unspecified: set it to an address peers can dial", adv))
		}
	}
	if c.HeartbeatTimeout < 5*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat timeout %s is below 5ms", c.HeartbeatTimeout))
	}
	if c.ElectionTimeout < 5*time.Millisecond {
		errs = append(errs, fmt.Errorf("election timeout %s is below 5ms", c.ElectionTimeout))
	}
	if c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("leader lease timeout %s must be between 5ms and the heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if c.CommitTimeout <= 0 {
		errs = append(errs, fmt.Errorf("commit timeout %s must be positive", c.CommitTimeout))
	}
	if c.ApplyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("apply timeout %s must be positive", c.ApplyTimeout))
	}
	if c.SnapshotThreshold == 0 {
		errs = append(errs, errors.New("snapshot threshold must be positive"))
	}
	if c.SnapshotInterval <= 0 {
		errs = append(errs, fmt.Errorf("snapshot interval %s must be positive", c.SnapshotInterval))
	}
	if c.FSMCommitInterval < 0 || c.FSMCommitInterval > time.Second {
		errs = append(errs, fmt.Errorf("fsm commit interval %s must be in 0..1s", c.FSMCommitInterval))
	}
	if c.WriteBatchInflight < 0 || c.WriteBatchInflight > 64 {
		errs = append(errs, fmt.Errorf("write batch inflight %d must be in 0..64", c.WriteBatchInflight))
	}
	if c.MaxAppendEntries <= 0 || c.MaxAppendEntries > 1024 {
		errs = append(errs, fmt.Errorf("max append entries %d must be in 1..1024", c.MaxAppendEntries))
	}
	if c.SnapshotRetain < 1 {
		errs = append(errs, fmt.Errorf("snapshot retain %d must be at least 1", c.SnapshotRetain))
	}
	if c.HealthInterval <= 0 || c.HealthContactThreshold <= 0 {
		errs = append(errs, errors.New("health interval and contact threshold must be positive"))
	}
	if c.ServerStabilizationTime < 0 || c.DeadNodeTimeout < 0 || c.DiskStallTimeout < 0 {
		errs = append(errs, errors.New("stabilization time and dead node timeout must not be negative"))
	}
	if err := c.TLS.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) advertise() string {
	if c.RaftAdvertise != "" {
		return c.RaftAdvertise
	}
	return c.RaftAddr
}
