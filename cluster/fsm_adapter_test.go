package cluster

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// testStateMachine is a state machine over a real store and snapshot store
// in a temporary dir, without raft.
type testStateMachine struct {
	*stateMachine
	store *fsm.Store
	snaps *raft.FileSnapshotStore
	dir   string
}

func newTestStateMachine(t *testing.T, interval time.Duration, retain int) testStateMachine {
	t.Helper()
	dir := t.TempDir()
	store, err := fsm.Open(filepath.Join(dir, "state.db"), fsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, retain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return testStateMachine{newStateMachine(store, snaps, interval), store, snaps, dir}
}

func setLog(idx uint64, key, val string) *raft.Log {
	return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: fsm.Command{Op: fsm.OpSet, Key: key, Value: []byte(val)}.Encode()}
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Entries applied with a commit interval stay pending (waiters do not see
// them) until a reader hurries them, the flush loop's timer fires, or a read
// of the store needs them.
func TestDeferredCommitTriggers(t *testing.T) {
	ts := newTestStateMachine(t, time.Hour, 3)
	sm, store := ts.stateMachine, ts.store

	res := sm.ApplyBatch([]*raft.Log{setLog(1, "a", "1")})
	if r := res[0].(fsm.Result); !r.OK {
		t.Fatalf("apply: %+v", r)
	}
	if got := sm.appliedIndex(); got != 0 {
		t.Fatalf("applied index %d right after apply, want 0 (pending)", got)
	}
	if _, _, _, ok := store.Pending(); !ok {
		t.Fatal("nothing pending after apply")
	}
	// A watch does not hurry the commit.
	if err := sm.waitApplied(waitCtx(t, 200*time.Millisecond), 1, false); err == nil {
		t.Fatal("watch saw index 1 without a commit")
	}
	// A reader that must see index 1 gets it committed; the flush loop
	// serves its demand.
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go sm.flushLoop(done)
	if err := sm.waitApplied(waitCtx(t, 5*time.Second), 1, true); err != nil {
		t.Fatalf("hurried wait: %v", err)
	}
	if _, _, _, ok := store.Pending(); ok {
		t.Fatal("still pending after a hurried wait")
	}

	// A reader already waiting makes the next apply commit at once.
	waited := make(chan error, 1)
	go func() { waited <- sm.waitApplied(waitCtx(t, 5*time.Second), 2, true) }()
	for sm.want.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	sm.ApplyBatch([]*raft.Log{setLog(2, "b", "2")})
	if _, _, _, ok := store.Pending(); ok {
		t.Fatal("apply left index 2 pending while a reader waited for it")
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}

	// Reading the store commits what is pending, and waiters hear of it.
	sm.ApplyBatch([]*raft.Log{setLog(3, "c", "3")})
	if e, ok, err := store.Get("c"); err != nil || !ok || e.ModifyIndex != 3 {
		t.Fatalf("read c = %+v (found %v, err %v)", e, ok, err)
	}
	if got := sm.appliedIndex(); got != 3 {
		t.Fatalf("applied index %d after a read, want 3", got)
	}
}

// With a short interval the flush loop commits on its own.
func TestDeferredCommitTimer(t *testing.T) {
	ts := newTestStateMachine(t, 20*time.Millisecond, 3)
	sm, store := ts.stateMachine, ts.store
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go sm.flushLoop(done)
	sm.ApplyBatch([]*raft.Log{setLog(1, "a", "1")})
	if err := sm.waitApplied(waitCtx(t, 5*time.Second), 1, false); err != nil {
		t.Fatalf("timer commit: %v", err)
	}
	if _, _, _, ok := store.Pending(); ok {
		t.Fatal("still pending after the timer commit")
	}
}

// A snapshot stands for every applied entry, pending ones included.
func TestDeferredCommitSnapshotIncludesPending(t *testing.T) {
	sm := newTestStateMachine(t, time.Hour, 3).stateMachine
	sm.ApplyBatch([]*raft.Log{setLog(1, "a", "1"), setLog(2, "b", "2")})
	sn, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	if got := sn.(*fsmSnapshot).sn.Index(); got != 2 {
		t.Fatalf("snapshot at index %d, want 2", got)
	}
	if got := sm.appliedIndex(); got != 2 {
		t.Fatalf("applied index %d after the snapshot, want 2", got)
	}
}
