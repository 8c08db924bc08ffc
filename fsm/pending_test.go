package fsm

import (
	"os"
	"path/filepath"
	"testing"
)

// Pending entries are in no file until a commit: a copy of the file taken meanwhile (what a crash
// leaves) holds only the committed state, from which the log is replayed.
func TestApplyPendingNotDurableUntilCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	s := openTestStoreAt(t, path)
	mustApply(t, s, logsFrom(1, set("a", "1"))...)
	var hooked []uint64
	s.SetCommitHook(func(idx uint64) { hooked = append(hooked, idx) })

	if _, err := s.ApplyPending(logsFrom(2, set("b", "2"))); err != nil {
		t.Fatal(err)
	}
	res, err := s.ApplyPending(append(logsFrom(2, set("b", "replayed")), logsFrom(3, set("c", "3"))...))
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Skipped || !res[1].OK {
		t.Fatalf("second pending batch: %+v; want index 2 skipped (already pending), 3 applied", res)
	}
	if got := s.AppliedIndex(); got != 1 {
		t.Fatalf("applied index %d while 2..3 pend, want 1", got)
	}
	if idx, _, _, ok := s.Pending(); !ok || idx != 3 {
		t.Fatalf("pending = %d, %v; want 3", idx, ok)
	}

	crashCopy := filepath.Join(t.TempDir(), "crash.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashCopy, b, 0o600); err != nil {
		t.Fatal(err)
	}
	crashed := openTestStoreAt(t, crashCopy)
	if got := crashed.AppliedIndex(); got != 1 {
		t.Fatalf("file copied before the commit has applied index %d, want 1", got)
	}
	if _, ok := mustGet(t, crashed, "b"); ok {
		t.Fatal("file copied before the commit holds a pending entry")
	}

	// A read commits first, so it sees everything applied; the hook hears of it once.
	if e, ok := mustGet(t, s, "b"); !ok || string(e.Value) != "2" || e.ModifyIndex != 2 {
		t.Fatalf("b = %+v (found %v)", e, ok)
	}
	if got := s.AppliedIndex(); got != 3 || len(hooked) != 1 || hooked[0] != 3 {
		t.Fatalf("after the read: applied %d, hook calls %v; want 3 and [3]", got, hooked)
	}
	if _, _, _, ok := s.Pending(); ok {
		t.Fatal("still pending after a read")
	}
}

// Close and Snapshot commit what is pending.
func TestPendingCommittedByCloseAndSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyPending(logsFrom(1, set("a", "1"))); err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sn.Index() != 1 {
		t.Fatalf("snapshot index %d, want 1", sn.Index())
	}
	sn.Release()
	if _, err := s.ApplyPending(logsFrom(2, set("b", "2"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	re := openTestStoreAt(t, path)
	if got := re.AppliedIndex(); got != 2 {
		t.Fatalf("reopened at applied index %d, want 2", got)
	}
	if e, ok := mustGet(t, re, "b"); !ok || string(e.Value) != "2" {
		t.Fatalf("b after reopen = %+v (found %v)", e, ok)
	}
}

// A pending transaction past MaxPendingBytes of log data commits by itself, bounding its memory.
func TestApplyPendingCommitsPastLimit(t *testing.T) {
	s := openTestStore(t)
	value := make([]byte, MaxValueSize)
	idx := uint64(0)
	for applied := 0; applied < MaxPendingBytes; applied += MaxValueSize {
		if _, _, _, ok := s.Pending(); idx > 0 && !ok {
			t.Fatalf("committed after %d bytes, before the %d-byte limit", applied, MaxPendingBytes)
		}
		idx++
		if _, err := s.ApplyPending(logsFrom(idx, Command{Op: OpSet, Key: "big", Value: value})); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, ok := s.Pending(); ok {
		t.Fatalf("still pending after %d entries of %d bytes", idx, MaxValueSize)
	}
	if got := s.AppliedIndex(); got != idx {
		t.Fatalf("applied index %d after the self-commit, want %d", got, idx)
	}
}
