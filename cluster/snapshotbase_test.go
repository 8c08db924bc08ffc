package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// TestStrayRestoreSnapshotIsRebuiltFromLog reproduces, with a real state
// machine, snapshot store and log store, what a former leader sees after an
// uncommitted user restore: its applied index comes from a snapshot at
// index 6 (term 1) that the new leader's log replaced with an entry of term
// 2. Before applying entry 7, the state machine must notice, rebuild its
// state from the older snapshot at 4 plus log entries 5..6, delete the
// stray snapshot, and end with exactly the log's state.
func TestStrayRestoreSnapshotIsRebuiltFromLog(t *testing.T) {
	ts := newTestStateMachine(t, 0, 3)
	sm, store, snaps, dir := ts.stateMachine, ts.store, ts.snaps, ts.dir
	logs := raft.NewInmemStore()
	sm.attach(logs, filepath.Join(dir, "snapshots"), slog.New(slog.NewTextHandler(io.Discard, nil)))

	set := func(idx, term uint64, key, val string) *raft.Log {
		return &raft.Log{Index: idx, Term: term, Type: raft.LogCommand, Data: fsm.Command{Op: fsm.OpSet, Key: key, Value: []byte(val)}.Encode()}
	}
	takeSnapshot := func(idx, term uint64) *raft.SnapshotMeta {
		t.Helper()
		sn, err := sm.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		sink, err := snaps.Create(raft.SnapshotVersionMax, idx, term, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := sn.Persist(sink); err != nil {
			t.Fatal(err)
		}
		sn.Release()
		list, err := snaps.List()
		if err != nil || len(list) == 0 || list[0].Index != idx {
			t.Fatalf("snapshot %d not listed: %v %v", idx, list, err)
		}
		return list[0]
	}

	// The shared history: entries 1..5 in term 1, a snapshot at 4.
	var history []*raft.Log
	for i := uint64(1); i <= 5; i++ {
		history = append(history, set(i, 1, fmt.Sprintf("k%d", i), "old"))
	}
	if err := logs.StoreLogs(history); err != nil {
		t.Fatal(err)
	}
	sm.ApplyBatch(history[:4])
	takeSnapshot(4, 1)
	sm.ApplyBatch(history[4:])

	// As leader in term 1 this node restores an operator's backup at index
	// 6 (a hole in its log): a state with only "restored".
	other, err := fsm.Open(filepath.Join(t.TempDir(), "other.db"), fsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.ApplyBatch([]fsm.Log{{Index: 1, Data: fsm.Command{Op: fsm.OpSet, Key: "restored", Value: []byte("x")}.Encode()}}); err != nil {
		t.Fatal(err)
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 6, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	osn, err := other.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := osn.WriteTo(sink); err != nil {
		t.Fatal(err)
	}
	osn.Release()
	other.Close()
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	_, rc, err := snaps.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := store.Get("restored"); !ok || sm.appliedIndex() != 6 {
		t.Fatalf("after the restore: restored key present %t, applied %d; want true, 6", ok, sm.appliedIndex())
	}

	// It loses leadership; the new leader's log has its own entries 6 and 7
	// in term 2, which raft appends here (nothing conflicts after 5).
	next := []*raft.Log{set(6, 2, "k6", "new"), set(7, 2, "k7", "new")}
	if err := logs.StoreLogs(next); err != nil {
		t.Fatal(err)
	}
	// raft skips 6 as applied and hands over 7.
	sm.ApplyBatch(next[1:])

	want := map[string]string{"k1": "old", "k2": "old", "k3": "old", "k4": "old", "k5": "old", "k6": "new", "k7": "new"}
	for k, v := range want {
		e, ok, err := store.Get(k)
		if err != nil || !ok || string(e.Value) != v {
			t.Errorf("%s: %q present %t err %v; want %q", k, e.Value, ok, err, v)
		}
	}
	if _, ok, _ := store.Get("restored"); ok {
		t.Error("the uncommitted restore's key survived the rebuild")
	}
	if got := store.AppliedIndex(); got != 7 {
		t.Errorf("applied index %d, want 7", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshots", sink.ID())); !os.IsNotExist(err) {
		t.Errorf("stray snapshot %s still on disk (err %v)", sink.ID(), err)
	}

	// A snapshot the log agrees with (a hole, or the same term) changes
	// nothing: the next apply goes straight on.
	sm.base.Store(&raft.SnapshotMeta{ID: "none", Index: 7, Term: 2})
	sm.ApplyBatch([]*raft.Log{set(8, 2, "k8", "new")})
	if e, ok, _ := store.Get("k8"); !ok || string(e.Value) != "new" || sm.base.Load() != nil {
		t.Errorf("after a confirmed base: k8 %q present %t, base %v", e.Value, ok, sm.base.Load())
	}
}

// TestRestoreAbortsUnpersistedSnapshot: a snapshot raft opened but has not
// persisted (its goroutine waits for raft's main loop, which waits for this
// restore) must not block the restore; its Persist then fails and cancels
// the sink.
func TestRestoreAbortsUnpersistedSnapshot(t *testing.T) {
	ts := newTestStateMachine(t, 0, 2)
	sm, store, snaps := ts.stateMachine, ts.store, ts.snaps
	sm.ApplyBatch([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: fsm.Command{Op: fsm.OpSet, Key: "a", Value: []byte("1")}.Encode()}})

	held, err := sm.Snapshot() // opened, not persisted
	if err != nil {
		t.Fatal(err)
	}
	// The image to restore: this store's own state, through the snapshot store.
	img, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 5, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Persist(sink); err != nil {
		t.Fatal(err)
	}
	img.Release()
	_, rc, err := snaps.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sm.Restore(rc) }() // ends when the restore does
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
	case <-time.After(10 * time.Second):
		held.Release() // unblock it, so the test ends
		<-done
		t.Fatal("restore was still blocked after 10s by a snapshot raft had not persisted")
	}
	sink2, err := snaps.Create(raft.SnapshotVersionMax, 6, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := held.Persist(sink2); !errors.Is(err, errSnapshotAborted) {
		t.Errorf("Persist of the aborted snapshot: %v, want errSnapshotAborted", err)
	}
	held.Release()
	if list, _ := snaps.List(); len(list) != 1 || list[0].Index != 5 {
		t.Errorf("snapshots after the aborted persist: %+v, want only index 5", list)
	}
	if e, ok, _ := store.Get("a"); !ok || string(e.Value) != "1" || sm.appliedIndex() != 5 {
		t.Errorf("after restore: a=%q present %t, applied %d; want 1, true, 5", e.Value, ok, sm.appliedIndex())
	}
}
