package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// stateMachine adapts *fsm.Store to raft.BatchingFSM and tracks the applied
// index for readers that must wait for it.
//
// raft calls ApplyBatch, Snapshot and Restore from its single FSM goroutine;
// readers call appliedIndex and waitApplied from any goroutine.
//
// The applied index counts every entry raft hands to ApplyBatch (commands and
// configuration changes). raft does not hand over its own no-op and barrier
// entries, which is why the leader's read barrier is an fsm.OpNoop command
// rather than raft.Barrier: its index is one this tracker will see.
type stateMachine struct {
	store *fsm.Store
	snaps raft.SnapshotStore // to learn the index of a snapshot being restored

	applied atomic.Uint64
	mu      sync.Mutex
	advance chan struct{} // closed and replaced whenever applied grows

	configIndex atomic.Uint64 // index of the newest configuration entry seen

	restores  atomic.Uint64 // snapshots restored into the store (install or start)
	snapshots atomic.Uint64 // snapshots taken

	// Checking that the snapshot the applied index came from is in the log
	// (snapshotbase.go); base is that snapshot until the log confirms it.
	logs    raft.LogStore
	snapDir string
	log     *slog.Logger
	base    atomic.Pointer[raft.SnapshotMeta]

	openMu sync.Mutex
	open   map[*fsmSnapshot]struct{} // snapshots raft holds (abortSnapshots)

	// Deferred commits (see ApplyBatch).
	commitInterval time.Duration
	want           atomic.Uint64 // the highest index a reader waits to see
	kick           chan struct{} // cap 1: entries are pending
	demand         chan struct{} // cap 1: a reader waits for pending entries
}

var _ raft.BatchingFSM = (*stateMachine)(nil)

func newStateMachine(store *fsm.Store, snaps raft.SnapshotStore, commitInterval time.Duration) *stateMachine {
	sm := &stateMachine{
		store: store, snaps: snaps, advance: make(chan struct{}),
		commitInterval: commitInterval, kick: make(chan struct{}, 1), demand: make(chan struct{}, 1),
	}
	// However a commit happens (below, or a reader of the store making what
	// is applied visible), waiters learn the new index.
	store.SetCommitHook(sm.setApplied)
	sm.applied.Store(store.AppliedIndex())
	return sm
}

// ApplyBatch applies a batch of committed entries to the store's pending
// bbolt transaction and answers raft at once, so a write is acknowledged
// once it is committed in the Raft log of a quorum and applied, without
// waiting for the state machine's own fsync. The log is what makes it
// durable: after a crash the node applies again every entry after the
// store's durable applied index (raft keeps them, since it compacts its log
// only up to a snapshot, and a snapshot commits first).
//
// The pending transaction is committed, making it visible (the applied
// index waiters see moves only then), when
//   - anything reads the store: every read sees every applied entry, so a
//     write is visible on its node when it is acknowledged, as before;
//   - a reader waits for an index it holds (waitApplied with hurry: every
//     linearizable read), at once;
//   - it is commitInterval old (flushLoop), so a watch wakes at most that
//     late;
//   - it holds fsm.MaxPendingBytes of log data (the store commits itself);
//   - raft takes a snapshot or restores one, or the node closes.
//
// With commitInterval 0 every batch is committed before raft hears back.
//
// A failed transaction means the state machine can no longer follow the log
// (disk full, I/O error); continuing would let replicas diverge, so it
// panics and the process restarts from the last durable applied index.
func (sm *stateMachine) ApplyBatch(logs []*raft.Log) []interface{} {
	if err := sm.verifyBase(); err != nil {
		panic(fmt.Errorf("before applying index %d: %w", logs[0].Index, err))
	}
	batch := make([]fsm.Log, len(logs))
	for i, l := range logs {
		batch[i] = fsm.Log{Index: l.Index, Data: l.Data, NoOp: l.Type != raft.LogCommand}
		if l.Type == raft.LogConfiguration && l.Index > sm.configIndex.Load() {
			sm.configIndex.Store(l.Index)
		}
	}
	results, err := sm.store.ApplyPending(batch)
	if err != nil {
		panic(fmt.Errorf("apply batch ending at index %d: %w", logs[len(logs)-1].Index, err))
	}
	if sm.commitInterval == 0 || sm.want.Load() > sm.applied.Load() {
		sm.commit()
	} else {
		select {
		case sm.kick <- struct{}{}:
		default:
		}
	}
	out := make([]interface{}, len(results))
	for i := range results {
		out[i] = results[i]
	}
	return out
}

// commit commits the store's pending transaction and publishes the new
// applied index. It panics when the commit fails, as ApplyBatch does.
func (sm *stateMachine) commit() {
	idx, err := sm.store.Commit()
	if err != nil {
		panic(fmt.Errorf("commit the state machine: %w", err))
	}
	sm.setApplied(idx)
}

// flushLoop commits pending entries commitInterval after they were first
// applied, or at once when a reader waits for them. It runs until done is
// closed; the store commits what is left when it closes.
func (sm *stateMachine) flushLoop(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-sm.demand:
		case <-sm.kick:
			if _, since, _, ok := sm.store.Pending(); ok {
				t := time.NewTimer(time.Until(since.Add(sm.commitInterval)))
				select {
				case <-t.C:
				case <-sm.demand:
				case <-done:
					t.Stop()
					return
				}
				t.Stop()
			}
		}
		sm.commit()
	}
}

// Apply is the single-entry form; raft uses ApplyBatch, Apply is kept for
// the raft.FSM interface.
func (sm *stateMachine) Apply(l *raft.Log) interface{} {
	return sm.ApplyBatch([]*raft.Log{l})[0]
}

func (sm *stateMachine) setApplied(idx uint64) {
	sm.mu.Lock()
	if idx > sm.applied.Load() {
		sm.applied.Store(idx)
		close(sm.advance)
		sm.advance = make(chan struct{})
	}
	sm.mu.Unlock()
}

func (sm *stateMachine) appliedIndex() uint64 { return sm.applied.Load() }

// waitApplied blocks until the applied index reaches idx or ctx ends. With
// hurry, entries up to idx are committed as soon as they are applied instead
// of up to commitInterval later: readers that must see them (linearizable
// reads) hurry, watches do not.
func (sm *stateMachine) waitApplied(ctx context.Context, idx uint64, hurry bool) error {
	if hurry && idx > sm.applied.Load() {
		for {
			w := sm.want.Load()
			if w >= idx || sm.want.CompareAndSwap(w, idx) {
				break
			}
		}
		select {
		case sm.demand <- struct{}{}:
		default:
		}
	}
	for {
		sm.mu.Lock()
		cur, ch := sm.applied.Load(), sm.advance
		sm.mu.Unlock()
		if cur >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for applied index %d (at %d): %w", idx, cur, ctx.Err())
		}
	}
}

// Snapshot opens a read transaction; Persist streams it while writes go on.
func (sm *stateMachine) Snapshot() (raft.FSMSnapshot, error) {
	if err := sm.verifyBase(); err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	sn, err := sm.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	sm.snapshots.Add(1)
	return sm.track(sn), nil
}

// Restore replaces the state with a snapshot sent by the leader or
// restored by an operator. fsm.Store.Restore is atomic: a crash leaves the
// old or the new state.
//
// The image carries the applied index of the store it was taken from, which
// is not always the Raft index it stands for: raft installs an operator's
// backup at a new index of its own past its log, and a follower's install
// covers raft's own no-op entries up to the snapshot's index. raft writes
// the snapshot to the snapshot store before restoring it, so the newest
// snapshot there is this one; its index becomes the applied index, exactly
// (even when lower than the image's), so entries after it are neither
// skipped nor re-applied.
func (sm *stateMachine) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	sm.abortSnapshots()
	if err := sm.store.Restore(rc); err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	idx := sm.store.AppliedIndex()
	if list, err := sm.snaps.List(); err == nil && len(list) > 0 {
		idx = list[0].Index
		if err := sm.store.SetAppliedIndex(idx); err != nil {
			return fmt.Errorf("fsm restore: %w", err)
		}
		sm.base.Store(list[0]) // checked against the log before the next apply
	}
	sm.restores.Add(1)
	sm.mu.Lock()
	sm.applied.Store(idx)
	close(sm.advance)
	sm.advance = make(chan struct{})
	sm.mu.Unlock()
	return nil
}

// fsmSnapshot is a snapshot raft is taking; stateMachine.Restore aborts
// the ones raft has not begun to persist (snapshotbase.go).
type fsmSnapshot struct {
	sm      *stateMachine
	mu      sync.Mutex // Persist, Release and abort never overlap
	sn      *fsm.Snapshot
	aborted bool
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot at index %d: %w", s.sn.Index(), errSnapshotAborted)
	}
	if _, err := s.sn.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot at index %d: %w", s.sn.Index(), err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot sink: %w", err)
	}
	return nil
}

func (s *fsmSnapshot) Release() {
	s.mu.Lock()
	s.sn.Release()
	s.mu.Unlock()
	s.sm.untrack(s)
}
