package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/fsm"
)

// Data dir layout (see docs/architecture.md):
//
//	DATA/raft/raft.db            Raft log and stable store (raft-boltdb)
//	DATA/raft/snapshots/<id>/    Raft snapshots: meta.json + state.bin (a bbolt file)
//	DATA/fsm/state.db            the state machine (fsm.Store, bbolt)
const (
	raftDirName   = "raft"
	raftDBName    = "raft.db"
	fsmDirName    = "fsm"
	fsmDBName     = "state.db"
	logCacheSize  = 1024
	readQueueSize = 4096
)

// Node is one raftkv server's Raft participant and state machine.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *fsm.Store
	sm    *stateMachine
	raft  *raft.Raft
	trans *raft.NetworkTransport
	logDB *raftboltdb.BoltStore

	ctx        context.Context
	cancel     context.CancelFunc
	shutdownCh chan struct{} // closed by Close; unblocks raft futures (see await)
	wg         sync.WaitGroup
	closed     atomic.Bool
	once       sync.Once

	readyMu   sync.Mutex
	readyTerm uint64        // term whose read barrier has been applied
	readyCh   chan struct{} // closed when readyTerm becomes the current term

	reads    chan *readReq
	writes   *writeBatcher // nil when WriteBatchInflight is 0
	detector *detector
	fresh    bool // started with no raft state
	pending  pendingWrites
	disk     *diskGuard // free space of the data dir's filesystem

	startRestores uint64 // snapshots restored into the fsm at start

	history leaderHistory // leader changes observed (history.go)
}

// Open starts a Node: opens (or creates) the data dir, restores the newest
// snapshot into the state machine if the state machine is behind it, starts
// Raft, and bootstraps a one-server cluster when asked to on an empty dir.
func Open(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid cluster config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.ID)
	n := &Node{cfg: cfg, log: log, readyCh: make(chan struct{}), reads: make(chan *readReq, readQueueSize), shutdownCh: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())

	// Close whatever was opened if a later step fails.
	var closers []func() error
	defer func() {
		if err != nil {
			n.cancel()
			close(n.shutdownCh)
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	raftDir := filepath.Join(cfg.DataDir, raftDirName)
	fsmDir := filepath.Join(cfg.DataDir, fsmDirName)
	for _, d := range []string{raftDir, fsmDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	n.disk = newDiskGuard(cfg.ID, cfg.DataDir, cfg.MinFreeDisk, log)
	n.disk.sample(time.Now())

	n.store, err = fsm.Open(filepath.Join(fsmDir, fsmDBName), fsm.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open state machine: %w", err)
	}
	closers = append(closers, n.store.Close)
	removeStaleTemps(cfg.DataDir, raftDir, log)

	hlog := newRaftLogger(log)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, cfg.SnapshotRetain, hlog.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if err := n.catchUpFromSnapshot(snaps); err != nil {
		return nil, err
	}
	n.sm = newStateMachine(n.store, snaps, cfg.FSMCommitInterval)

	n.logDB, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(raftDir, raftDBName),
		// The log's freelist is large and churns (entries are appended at the end and compacted from the
		// front): keep it in a hashmap and rebuild it on open instead of writing it on every commit. Data
		// and meta pages are still fsynced on every commit.
		BoltOptions: &bbolt.Options{FreelistType: bbolt.FreelistMapType, NoFreelistSync: true},
	})
	if err != nil {
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	closers = append(closers, n.logDB.Close)
	n.sm.attach(n.logDB, filepath.Join(raftDir, "snapshots"), log)
	holeAware := &holeAwareLogs{LogStore: n.logDB, n: n}
	logs, err := raft.NewLogCache(logCacheSize, holeAware)
	if err != nil {
		return nil, fmt.Errorf("create log cache: %w", err)
	}

	// An advertise address with port 0 (tests bind 127.0.0.1:0) means "the
	// address the listener got".
	var adv net.Addr
	if _, port, _ := net.SplitHostPort(cfg.advertise()); port != "0" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.advertise()); err != nil {
			return nil, fmt.Errorf("resolve raft advertise address %q: %w", cfg.advertise(), err)
		}
	}
	stream, err := newRetryStreamLayer(cfg.RaftAddr, adv, n.shutdownCh, cfg.DialOverride, cfg.TLS, log)
	if err != nil {
		return nil, fmt.Errorf("raft transport: %w", err)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		Logger:  hlog.Named("transport"),
		MaxPool: 3,
		Timeout: 10 * time.Second,
	})
	closers = append(closers, n.trans.Close)
	n.cfg.RaftAdvertise = string(n.trans.LocalAddr())

	hasState, err := raft.HasExistingState(logs, n.logDB, snaps)
	if err != nil {
		return nil, fmt.Errorf("check existing raft state: %w", err)
	}

	rc := n.raftConfig(hlog)
	n.raft, err = raft.NewRaft(rc, n.sm, logs, n.logDB, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	closers = append(closers, func() error { return n.raft.Shutdown().Error() })
	holeAware.r.Store(n.raft)

	switch {
	case cfg.Bootstrap && !hasState:
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: n.trans.LocalAddr(),
		}}}
		if err := n.raft.BootstrapCluster(boot).Error(); err != nil {
			return nil, fmt.Errorf("bootstrap cluster: %w", err)
		}
		log.Info("bootstrapped a new cluster", "raft_addr", n.trans.LocalAddr())
	case cfg.Bootstrap:
		log.Info("bootstrap requested but the data dir has raft state; starting from it instead")
	}

	n.fresh = !hasState && !cfg.Bootstrap
	n.detector = newDetector(n)
	n.wg.Go(n.observe)
	n.wg.Go(n.watchLeadership)
	n.wg.Go(n.runReadBatcher)
	if cfg.FSMCommitInterval > 0 {
		n.wg.Go(func() { n.sm.flushLoop(n.shutdownCh) })
	}
	if cfg.WriteBatchInflight > 0 {
		n.writes = newWriteBatcher(n, cfg.WriteBatchInflight)
		n.wg.Go(n.writes.run)
	}
	n.wg.Go(func() { n.disk.run(n.ctx) })
	return n, nil
}

func (n *Node) raftConfig(hlog hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.TrailingLogs
	rc.MaxAppendEntries = n.cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	// The state machine is durable and skips entries it has applied, so a
	// restart replays only the log tail instead of restoring a snapshot.
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = hlog
	return rc
}

// catchUpFromSnapshot restores the newest snapshot into the state machine
// when the state machine is behind it (for example its file was lost or
// restored from an old copy). raft itself will not, because the node runs
// with NoSnapshotRestoreOnStart and replays only entries after the snapshot.
func (n *Node) catchUpFromSnapshot(snaps *raft.FileSnapshotStore) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(list) == 0 || list[0].Index <= n.store.AppliedIndex() {
		return nil
	}
	newest := list[0]
	n.log.Info("state machine is behind the newest snapshot; restoring it",
		"applied_index", n.store.AppliedIndex(), "snapshot_index", newest.Index, "snapshot", newest.ID)
	_, rc, err := snaps.Open(newest.ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", newest.ID, err)
	}
	defer rc.Close()
	if err := n.store.Restore(rc); err != nil {
		return fmt.Errorf("restore snapshot %s: %w", newest.ID, err)
	}
	// The snapshot covers raft's own entries up to its index too; record that
	// so the next start does not restore it again.
	if err := n.store.SetAppliedIndex(newest.Index); err != nil {
		return fmt.Errorf("record snapshot index %d: %w", newest.Index, err)
	}
	n.startRestores++
	return nil
}

// Close stops the node. A leader first hands leadership to another voter so
// the cluster pays no election timeout. Close waits for every goroutine the
// node started; it is safe to call more than once.
func (n *Node) Close(ctx context.Context) error {
	var err error
	n.once.Do(func() {
		if n.raft.State() == raft.Leader && n.otherVoters() > 0 {
			if terr := n.transferLeadership(ctx); terr != nil {
				n.log.Warn("leadership transfer before shutdown failed", "error", terr)
			}
		}
		n.closed.Store(true)
		n.cancel()
		close(n.shutdownCh)
		errs := []error{}
		if e := n.raft.Shutdown().Error(); e != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", e))
		}
		n.wg.Wait()
		if e := n.trans.Close(); e != nil {
			errs = append(errs, fmt.Errorf("close raft transport: %w", e))
		}
		if e := n.logDB.Close(); e != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", e))
		}
		if e := n.store.Close(); e != nil {
			errs = append(errs, fmt.Errorf("close state machine: %w", e))
		}
		err = errors.Join(errs...)
	})
	return err
}

// ID returns this node's Raft ID.
func (n *Node) ID() string { return n.cfg.ID }

// Store gives read access to the local state machine (stale reads).
func (n *Node) Store() *fsm.Store { return n.store }
