package fsm

import (
	"errors"
	"reflect"
	"testing"
)

func TestApplySemantics(t *testing.T) {
	// Every case applies given at indexes 1..len(given), then cmd at the next index.
	tests := []struct {
		name   string
		given  []Command
		cmd    Command
		wantOK bool
		want   []Entry // List("") afterwards
	}{
		{
			name:   "set new",
			cmd:    Command{Op: OpSet, Key: "a", Value: []byte("1"), Flags: 9},
			wantOK: true,
			want:   []Entry{{Key: "a", Value: []byte("1"), Flags: 9, CreateIndex: 1, ModifyIndex: 1}},
		},
		{
			name:   "set existing keeps CreateIndex",
			given:  []Command{set("a", "1"), set("b", "x")},
			cmd:    Command{Op: OpSet, Key: "a", Value: []byte("2"), Flags: 3},
			wantOK: true,
			want: []Entry{
				{Key: "a", Value: []byte("2"), Flags: 3, CreateIndex: 1, ModifyIndex: 3},
				{Key: "b", Value: []byte("x"), CreateIndex: 2, ModifyIndex: 2},
			},
		},
		{
			name:   "set empty value",
			cmd:    set("a", ""),
			wantOK: true,
			want:   []Entry{{Key: "a", CreateIndex: 1, ModifyIndex: 1}},
		},
		{
			name:   "delete",
			given:  []Command{set("a", "1"), set("b", "2")},
			cmd:    Command{Op: OpDelete, Key: "a"},
			wantOK: true,
			want:   []Entry{{Key: "b", Value: []byte("2"), CreateIndex: 2, ModifyIndex: 2}},
		},
		{
			name:   "delete absent",
			given:  []Command{set("b", "2")},
			cmd:    Command{Op: OpDelete, Key: "a"},
			wantOK: true,
			want:   []Entry{{Key: "b", Value: []byte("2"), CreateIndex: 1, ModifyIndex: 1}},
		},
		{
			name:   "recreate after delete gets a new CreateIndex",
			given:  []Command{set("a", "1"), {Op: OpDelete, Key: "a"}},
			cmd:    set("a", "2"),
			wantOK: true,
			want:   []Entry{{Key: "a", Value: []byte("2"), CreateIndex: 3, ModifyIndex: 3}},
		},
		{
			name:   "cas 0 creates absent key",
			cmd:    Command{Op: OpCAS, Key: "a", Value: []byte("1"), Flags: 5},
			wantOK: true,
			want:   []Entry{{Key: "a", Value: []byte("1"), Flags: 5, CreateIndex: 1, ModifyIndex: 1}},
		},
		{
			name:   "cas 0 refuses existing key",
			given:  []Command{set("a", "1")},
			cmd:    Command{Op: OpCAS, Key: "a", Value: []byte("2")},
			wantOK: false,
			want:   []Entry{{Key: "a", Value: []byte("1"), CreateIndex: 1, ModifyIndex: 1}},
		},
		{
			name:   "cas matching index",
			given:  []Command{set("a", "1"), set("a", "2")},
			cmd:    Command{Op: OpCAS, Key: "a", Value: []byte("3"), Index: 2},
			wantOK: true,
			want:   []Entry{{Key: "a", Value: []byte("3"), CreateIndex: 1, ModifyIndex: 3}},
		},
		{
			name:   "cas stale index",
			given:  []Command{set("a", "1"), set("a", "2")},
			cmd:    Command{Op: OpCAS, Key: "a", Value: []byte("3"), Index: 1},
			wantOK: false,
			want:   []Entry{{Key: "a", Value: []byte("2"), CreateIndex: 1, ModifyIndex: 2}},
		},
		{
			name:   "cas index on absent key",
			cmd:    Command{Op: OpCAS, Key: "a", Value: []byte("3"), Index: 1},
			wantOK: false,
		},
		{
			name:   "cad matching index",
			given:  []Command{set("a", "1"), set("b", "2")},
			cmd:    Command{Op: OpCAD, Key: "a", Index: 1},
			wantOK: true,
			want:   []Entry{{Key: "b", Value: []byte("2"), CreateIndex: 2, ModifyIndex: 2}},
		},
		{
			name:   "cad stale index",
			given:  []Command{set("a", "1"), set("a", "2")},
			cmd:    Command{Op: OpCAD, Key: "a", Index: 1},
			wantOK: false,
			want:   []Entry{{Key: "a", Value: []byte("2"), CreateIndex: 1, ModifyIndex: 2}},
		},
		{
			name:   "cad 0 never matches",
			given:  []Command{set("a", "1")},
			cmd:    Command{Op: OpCAD, Key: "a"},
			wantOK: false,
			want:   []Entry{{Key: "a", Value: []byte("1"), CreateIndex: 1, ModifyIndex: 1}},
		},
		{
			name:   "cad absent key",
			cmd:    Command{Op: OpCAD, Key: "a", Index: 1},
			wantOK: false,
		},
		{
			name:   "delete prefix",
			given:  []Command{set("a/1", "x"), set("a/2", "x"), set("a/2/3", "x"), set("a", "x"), set("b/1", "x")},
			cmd:    Command{Op: OpDeletePrefix, Key: "a/"},
			wantOK: true,
			want: []Entry{
				{Key: "a", Value: []byte("x"), CreateIndex: 4, ModifyIndex: 4},
				{Key: "b/1", Value: []byte("x"), CreateIndex: 5, ModifyIndex: 5},
			},
		},
		{
			name:   "delete empty prefix deletes everything",
			given:  []Command{set("a", "x"), set("b", "x"), {Op: OpSetMeta, Key: "m", Value: []byte("x")}},
			cmd:    Command{Op: OpDeletePrefix},
			wantOK: true,
		},
		{
			name:   "noop",
			given:  []Command{set("a", "1")},
			cmd:    Command{Op: OpNoop},
			wantOK: true,
			want:   []Entry{{Key: "a", Value: []byte("1"), CreateIndex: 1, ModifyIndex: 1}},
		},
		{
			name:   "set meta is invisible to kv",
			given:  []Command{set("a", "1")},
			cmd:    Command{Op: OpSetMeta, Key: "a", Value: []byte("meta")},
			wantOK: true,
			want:   []Entry{{Key: "a", Value: []byte("1"), CreateIndex: 1, ModifyIndex: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestStore(t)
			if len(tt.given) > 0 {
				mustApply(t, s, logsFrom(1, tt.given...)...)
			}
			idx := uint64(len(tt.given) + 1)
			res := mustApply(t, s, logsFrom(idx, tt.cmd)...)[0]
			if res.Err != nil || res.Skipped || res.Index != idx {
				t.Fatalf("got result %+v, want index %d without error or skip", res, idx)
			}
			if res.OK != tt.wantOK {
				t.Errorf("got OK %v, want %v", res.OK, tt.wantOK)
			}
			if got := mustList(t, s, ""); !entriesEqual(got, tt.want) {
				t.Errorf("got entries %+v, want %+v", got, tt.want)
			}
			if got := s.AppliedIndex(); got != idx {
				t.Errorf("got applied index %d, want %d", got, idx)
			}
		})
	}
}

func TestApplyMeta(t *testing.T) {
	s := openTestStore(t)
	mustApply(t, s, logsFrom(1,
		Command{Op: OpSetMeta, Key: "node/n1", Value: []byte("addr1")},
		Command{Op: OpSetMeta, Key: "node/n2", Value: []byte("addr2")},
		Command{Op: OpSetMeta, Key: "other", Value: []byte("x")},
		Command{Op: OpDeleteMeta, Key: "node/n2"},
		Command{Op: OpDeleteMeta, Key: "absent"},
	)...)
	if v, ok, err := s.Meta("node/n1"); err != nil || !ok || string(v) != "addr1" {
		t.Errorf("Meta(node/n1) = %q, %v, %v; want addr1, true, nil", v, ok, err)
	}
	if _, ok, err := s.Meta("node/n2"); err != nil || ok {
		t.Errorf("Meta(node/n2) found %v, err %v; want deleted", ok, err)
	}
	m, err := s.MetaList("node/")
	if err != nil || len(m) != 1 || string(m["node/n1"]) != "addr1" {
		t.Errorf("MetaList(node/) = %q, %v; want only node/n1=addr1", m, err)
	}
	if es := mustList(t, s, ""); len(es) != 0 {
		t.Errorf("got kv entries %+v, want none: meta must be invisible to kv reads", es)
	}
	if _, ok := mustGet(t, s, "node/n1"); ok {
		t.Errorf("Get(node/n1) found a meta key")
	}
}

func TestApplyBadEntries(t *testing.T) {
	s := openTestStore(t)
	mustApply(t, s, logsFrom(1, set("a", "1"))...)
	before := mustDigest(t, s)
	logs := []Log{
		{Index: 2, Data: []byte("garbage")},
		{Index: 3, Data: nil},
		{Index: 4, Data: set("", "empty key").Encode()},
		{Index: 5, Data: Command{Op: OpSet, Key: "big", Value: make([]byte, MaxValueSize+1)}.Encode()},
	}
	res := mustApply(t, s, logs...)
	for i, r := range res {
		if !errors.Is(r.Err, ErrBadCommand) || r.OK || r.Skipped || r.Index != logs[i].Index {
			t.Errorf("log %d: got %+v, want an ErrBadCommand result", logs[i].Index, r)
		}
	}
	if got := s.AppliedIndex(); got != 5 {
		t.Errorf("got applied index %d, want 5", got)
	}
	after := mustDigest(t, s)
	if after.Digest != before.Digest || after.AppliedIndex != 5 {
		t.Errorf("got digest %+v, want state of %+v at index 5", after, before)
	}
}

func TestApplyNoOpLogsAndSkips(t *testing.T) {
	s := openTestStore(t)
	res := mustApply(t, s,
		Log{Index: 1, Data: set("a", "1").Encode()},
		Log{Index: 2, NoOp: true, Data: []byte("ignored")},
		Log{Index: 2, Data: set("a", "dup").Encode()}, // same index again within the batch
		Log{Index: 3, Data: set("b", "1").Encode()},
	)
	want := []Result{{Index: 1, OK: true}, {Index: 2, OK: true}, {Index: 2, Skipped: true}, {Index: 3, OK: true}}
	for i := range want {
		if !reflect.DeepEqual(res[i], want[i]) {
			t.Errorf("result %d: got %+v, want %+v", i, res[i], want[i])
		}
	}
	if e, _ := mustGet(t, s, "a"); string(e.Value) != "1" {
		t.Errorf("got a=%q, want 1", e.Value)
	}
	if got := s.AppliedIndex(); got != 3 {
		t.Errorf("got applied index %d, want 3", got)
	}
	// A batch of NoOps only still advances the index.
	mustApply(t, s, Log{Index: 4, NoOp: true}, Log{Index: 5, NoOp: true})
	if got := s.AppliedIndex(); got != 5 {
		t.Errorf("got applied index %d, want 5", got)
	}
	if res, err := s.ApplyBatch(nil); err != nil || len(res) != 0 {
		t.Errorf("ApplyBatch(nil) = %v, %v; want no results, no error", res, err)
	}
}

func TestReplayAfterReopen(t *testing.T) {
	r := testRand(t)
	path := t.TempDir() + "/fsm.db"
	batches := randomBatches(r, 1, 300)
	var all []Log
	for _, b := range batches {
		all = append(all, b...)
	}
	cut := len(all) * 2 / 3

	// Reference: everything applied once.
	ref := openTestStore(t)
	mustApply(t, ref, all...)
	want := mustDigest(t, ref)

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, all[:cut]...)
	applied := s.AppliedIndex()
	stateAtCut := mustDigest(t, s)
	if err := s.Close(); err != nil { // the "crash": only what ApplyBatch committed survives
		t.Fatal(err)
	}

	s = openTestStoreAt(t, path)
	if got := s.AppliedIndex(); got != applied {
		t.Fatalf("after reopen: got applied index %d, want %d", got, applied)
	}
	// Raft replays from its last snapshot, i.e. from before what we applied.
	replay := all[cut/2:]
	res := mustApply(t, s, replay[:cut-cut/2]...)
	for _, r := range res {
		if !r.Skipped || r.OK || r.Err != nil {
			t.Fatalf("replayed log %d: got %+v, want Skipped only", r.Index, r)
		}
	}
	if got := mustDigest(t, s); got != stateAtCut {
		t.Fatalf("after a replay of applied logs: got %+v, want unchanged %+v", got, stateAtCut)
	}
	// A batch straddling the applied index: the old part skipped, the tail applied.
	res = mustApply(t, s, all[cut-5:]...)
	for i, r := range res {
		if wantSkip := i < 5; r.Skipped != wantSkip {
			t.Fatalf("log %d: got Skipped %v, want %v", r.Index, r.Skipped, wantSkip)
		}
	}
	if got := mustDigest(t, s); got != want {
		t.Errorf("after the tail: got %+v, want %+v", got, want)
	}
	if got, want := mustList(t, s, ""), mustList(t, ref, ""); !entriesEqual(got, want) {
		t.Errorf("got entries %+v, want %+v", got, want)
	}
}

func TestClosedStore(t *testing.T) {
	s := openTestStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	if _, err := s.ApplyBatch(logsFrom(1, set("a", "1"))); !errors.Is(err, ErrClosed) {
		t.Errorf("ApplyBatch: got %v, want ErrClosed", err)
	}
	if _, _, err := s.Get("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get: got %v, want ErrClosed", err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Errorf("Snapshot: got %v, want ErrClosed", err)
	}
}
