package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// A snapshot the log does not contain.
//
// hashicorp/raft's Restore (PUT /v1/snapshot) writes the operator's
// snapshot on the leader at a new index X+1 past its log, applies it to the
// leader's state machine and records X+1 as applied, all before any
// follower has it. If that leader then dies or loses leadership before a
// follower installs it, the others elect a leader whose log has its own
// entry at X+1 (a later term). Back as a follower, the old leader has
// nothing in its log store after X, so raft appends the new leader's
// entries X+1.. without conflict, and then skips X+1 as already applied:
// its state machine keeps the restore nobody committed and applies the
// rest of the log on top of it. The replicas diverge for good (found by
// the kill -9 loops in cmd/raftkv/e2e_crash_test.go: same applied index,
// different digests).
//
// If the old leader had already appended raft's post-restore no-op (X+2)
// before dying, raft cannot even see the conflict: the new leader's entry
// X+1 falls inside the old leader's log, whose store has no entry X+1 (the
// burned index), so every AppendEntries fails with "failed to get log
// entry" and the node stays behind until the leader walks its nextIndex
// down below its own compacted log, one backed-off retry per entry.
//
// The state machine therefore remembers the snapshot its applied index
// last came from (at start, or Restore) until the log confirms it:
//
//   - Before it applies the next entries (or takes a snapshot), the log
//     store's entry at that index must be absent (the log has the same
//     hole, i.e. the leader has the same snapshot) or carry the snapshot's
//     term. An entry with a different term means the snapshot's history
//     lost; the state machine is rebuilt from the newest older snapshot the
//     log agrees with (or from empty when the log starts at 1) plus the log
//     up to that index, and the stray snapshot is deleted so this node
//     never sends it to anyone.
//   - While it is unconfirmed and this node follows another leader, the
//     log store answers a read of the burned index with an entry of the
//     snapshot's term (holeAwareLogs), as raft itself does for a snapshot
//     at the end of the log, so raft's own conflict check truncates the
//     stray entries after it and takes the leader's.

// attach gives the state machine what the check needs, once Open has
// opened the log store: the log store, the snapshot directory and a
// logger. Called before raft starts.
func (sm *stateMachine) attach(logs raft.LogStore, snapDir string, log *slog.Logger) {
	sm.logs, sm.snapDir, sm.log = logs, snapDir, log
	if list, err := sm.snaps.List(); err == nil && len(list) > 0 && list[0].Index == sm.store.AppliedIndex() {
		sm.base.Store(list[0])
	}
}

// verifyBase runs, on raft's FSM goroutine, before the first entries
// applied (or the first snapshot taken) after the applied index was set
// from a snapshot; see above.
func (sm *stateMachine) verifyBase() error {
	b := sm.base.Load()
	if b == nil || sm.logs == nil {
		return nil
	}
	agrees, err := sm.logAgrees(b)
	if err != nil {
		return err
	}
	sm.base.Store(nil)
	if agrees {
		return nil
	}
	sm.log.Error("this node's state comes from a snapshot the cluster's log does not contain (a restore this node applied as leader that was never committed); rebuilding it from the log",
		"snapshot", b.ID, "snapshot_index", b.Index, "snapshot_term", b.Term)
	if err := sm.rebuild(b.Index); err != nil {
		return fmt.Errorf("rebuild state machine up to index %d: %w", b.Index, err)
	}
	dir := filepath.Join(sm.snapDir, b.ID)
	if err := os.RemoveAll(dir); err != nil {
		sm.log.Warn("remove stray snapshot", "path", dir, "error", err)
	} else {
		sm.log.Warn("removed stray snapshot", "path", dir)
	}
	sm.restores.Add(1)
	return nil
}

// logAgrees reports whether the log store has no entry at m's index, or
// one with m's term.
func (sm *stateMachine) logAgrees(m *raft.SnapshotMeta) (bool, error) {
	var l raft.Log
	if err := sm.logs.GetLog(m.Index, &l); err != nil {
		if errors.Is(err, raft.ErrLogNotFound) {
			return true, nil
		}
		return false, fmt.Errorf("read log entry %d: %w", m.Index, err)
	}
	return l.Term == m.Term, nil
}

// rebuild resets the state machine to the newest snapshot below upTo that
// the log agrees with (or to empty when the log starts at index 1), then
// applies the log store's entries up to upTo.
func (sm *stateMachine) rebuild(upTo uint64) error {
	list, err := sm.snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	var from *raft.SnapshotMeta
	for _, m := range list {
		if m.Index >= upTo {
			continue
		}
		if ok, err := sm.logAgrees(m); err != nil {
			return err
		} else if ok {
			from = m
			break
		}
	}
	next := uint64(1)
	if from != nil {
		_, rc, err := sm.snaps.Open(from.ID)
		if err != nil {
			return fmt.Errorf("open snapshot %s: %w", from.ID, err)
		}
		err = sm.store.Restore(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("restore snapshot %s: %w", from.ID, err)
		}
		next = from.Index + 1
	} else {
		first, err := sm.logs.FirstIndex()
		if err != nil {
			return fmt.Errorf("first log index: %w", err)
		}
		if first > 1 {
			return fmt.Errorf("no snapshot before index %d and the log starts at %d: wipe this node's data dir and let it rejoin", upTo, first)
		}
		if err := sm.resetEmpty(); err != nil {
			return err
		}
	}
	if err := sm.store.SetAppliedIndex(next - 1); err != nil {
		return fmt.Errorf("set applied index %d: %w", next-1, err)
	}
	const chunk = 256
	for i := next; i <= upTo; {
		var batch []fsm.Log
		for ; i <= upTo && len(batch) < chunk; i++ {
			var l raft.Log
			if err := sm.logs.GetLog(i, &l); err != nil {
				return fmt.Errorf("read log entry %d: %w", i, err)
			}
			batch = append(batch, fsm.Log{Index: l.Index, Data: l.Data, NoOp: l.Type != raft.LogCommand})
		}
		if _, err := sm.store.ApplyBatch(batch); err != nil {
			return fmt.Errorf("apply log entries up to %d: %w", i-1, err)
		}
	}
	return nil
}

// resetEmpty replaces the state with that of a new, empty store.
func (sm *stateMachine) resetEmpty() error {
	dir, err := os.MkdirTemp(sm.snapDir, "empty-*.tmp")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	empty, err := fsm.Open(filepath.Join(dir, "empty.db"), fsm.Options{})
	if err != nil {
		return fmt.Errorf("create empty state: %w", err)
	}
	var buf bytes.Buffer
	sn, err := empty.Snapshot()
	if err == nil {
		_, err = sn.WriteTo(&buf)
		sn.Release()
	}
	if cerr := empty.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("image of an empty state: %w", err)
	}
	if err := sm.store.Restore(&buf); err != nil {
		return fmt.Errorf("reset to empty: %w", err)
	}
	return nil
}

// holeAwareLogs is the log store raft reads through (below its cache).
type holeAwareLogs struct {
	raft.LogStore
	n *Node
	r atomic.Pointer[raft.Raft] // set once raft runs
}

// GetLog answers a read of the index burned by the unconfirmed snapshot
// the state machine came from with an entry of that snapshot's term, but
// only while this node follows another leader (a leader must find the hole
// and send the snapshot itself); see above.
func (s *holeAwareLogs) GetLog(index uint64, l *raft.Log) error {
	err := s.LogStore.GetLog(index, l)
	if !errors.Is(err, raft.ErrLogNotFound) {
		return err
	}
	b := s.n.sm.base.Load()
	r := s.r.Load()
	if b == nil || b.Index != index || r == nil || r.State() != raft.Follower {
		return err
	}
	if _, leader := r.LeaderWithID(); leader == "" || string(leader) == s.n.cfg.ID {
		return err
	}
	*l = raft.Log{Index: index, Term: b.Term, Type: raft.LogNoop}
	return nil
}

// Snapshots taken while a restore waits.
//
// raft takes a snapshot in two steps: the FSM goroutine opens it (a bbolt
// read transaction), then raft's snapshot goroutine asks the main loop for
// the configuration before it persists and releases it. A snapshot install
// (or an operator's restore) holds the main loop while the FSM goroutine
// restores, and fsm.Store.Restore waits for every open read transaction to
// end before it swaps the file. With a snapshot opened just before the
// install, the three wait on each other for ever: the node stops applying
// and replicating, every read of its store blocks behind the swap, and it
// cannot even shut down (found by the kill -9 loops with a snapshot every 64
// entries: a restarted follower hung in "snapshot restore progress").
// Restore therefore first aborts the snapshots raft has opened but not
// begun to persist; their Persist fails, and raft logs it and snapshots
// again later. One already persisting is waited for: it needs nothing from
// the main loop.

var errSnapshotAborted = errors.New("aborted: the state machine is being restored")

func (sm *stateMachine) track(sn *fsm.Snapshot) *fsmSnapshot {
	s := &fsmSnapshot{sm: sm, sn: sn}
	sm.openMu.Lock()
	defer sm.openMu.Unlock()
	if sm.open == nil {
		sm.open = map[*fsmSnapshot]struct{}{}
	}
	sm.open[s] = struct{}{}
	return s
}

func (sm *stateMachine) untrack(s *fsmSnapshot) {
	sm.openMu.Lock()
	defer sm.openMu.Unlock()
	delete(sm.open, s)
}

// abortSnapshots releases every snapshot raft has opened and not yet
// persisted, so a restore does not wait for them.
func (sm *stateMachine) abortSnapshots() {
	sm.openMu.Lock()
	open := make([]*fsmSnapshot, 0, len(sm.open))
	for s := range sm.open {
		open = append(open, s)
	}
	sm.openMu.Unlock()
	for _, s := range open {
		s.mu.Lock()
		if !s.aborted {
			s.aborted = true
			s.sn.Release()
		}
		s.mu.Unlock()
	}
}
