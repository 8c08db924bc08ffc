package fsm

import (
	"errors"
	"reflect"
	"testing"
)

func TestBatchEncodingRoundTrip(t *testing.T) {
	cmds := []Command{
		set("a", "1"),
		{Op: OpCAS, Key: "b", Value: []byte("2"), Flags: 7, Index: 300},
		{Op: OpDelete, Key: "c"},
		{Op: OpCAD, Key: "d", Index: 1 << 40},
	}
	whole := Command{Op: OpBatch, Value: EncodeBatch(cmds)}
	if err := whole.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	dec, err := DecodeCommand(whole.Encode())
	if err != nil {
		t.Fatalf("decode command: %v", err)
	}
	got, err := DecodeBatch(dec.Value)
	if err != nil {
		t.Fatalf("decode batch: %v", err)
	}
	if !reflect.DeepEqual(got, cmds) {
		t.Errorf("got %+v, want %+v", got, cmds)
	}
}

func TestBatchDecodeRejects(t *testing.T) {
	cases := map[string][]byte{
		"empty":           EncodeBatch(nil),
		"txn inside":      EncodeBatch([]Command{{Op: OpTxn, Value: EncodeTxn([]TxnOp{{Verb: TxnSet, Key: "k"}})}}),
		"prefix delete":   EncodeBatch([]Command{{Op: OpDeletePrefix, Key: "p/"}}),
		"meta inside":     EncodeBatch([]Command{{Op: OpSetMeta, Key: "node/x", Value: []byte("1")}}),
		"nested batch":    EncodeBatch([]Command{{Op: OpBatch, Value: EncodeBatch([]Command{set("a", "1")})}}),
		"empty key":       EncodeBatch([]Command{{Op: OpSet}}),
		"trailing":        append(EncodeBatch([]Command{set("a", "1")}), 0),
		"truncated":       EncodeBatch([]Command{set("a", "1")})[:5],
		"count too large": EncodeBatch(make([]Command, MaxBatchOps+1)),
	}
	for name, b := range cases {
		if _, err := DecodeBatch(b); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: got %v, want ErrBadCommand", name, err)
		}
		if err := (Command{Op: OpBatch, Value: b}).Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
	if err := (Command{Op: OpBatch, Key: "k", Value: EncodeBatch([]Command{set("a", "1")})}).Validate(); err == nil {
		t.Error("a batch with a key was accepted")
	}
}

// Every command of a batch applies on its own at the entry's index: a failed CAS changes nothing and
// does not undo the others.
func TestApplyBatchEntry(t *testing.T) {
	s := openTestStore(t)
	mustApply(t, s, Log{Index: 1, Data: set("cas-ok", "old").Encode()}, Log{Index: 2, Data: set("gone", "x").Encode()})
	batch := Command{Op: OpBatch, Value: EncodeBatch([]Command{
		set("new", "v"),
		{Op: OpCAS, Key: "cas-ok", Value: []byte("swapped"), Index: 1},
		{Op: OpCAS, Key: "cas-bad", Value: []byte("no"), Index: 99},
		{Op: OpDelete, Key: "gone"},
		{Op: OpCAD, Key: "missing", Index: 5},
	})}
	res := mustApply(t, s, Log{Index: 3, Data: batch.Encode()})
	want := Result{Index: 3, OK: true, Batch: []bool{true, true, false, true, false}}
	if !reflect.DeepEqual(res[0], want) {
		t.Fatalf("got %+v, want %+v", res[0], want)
	}
	if e, ok := mustGet(t, s, "new"); !ok || string(e.Value) != "v" || e.ModifyIndex != 3 || e.CreateIndex != 3 {
		t.Errorf("new: got %+v (found %v)", e, ok)
	}
	if e, ok := mustGet(t, s, "cas-ok"); !ok || string(e.Value) != "swapped" || e.ModifyIndex != 3 || e.CreateIndex != 1 {
		t.Errorf("cas-ok: got %+v (found %v)", e, ok)
	}
	for _, k := range []string{"cas-bad", "gone", "missing"} {
		if _, ok := mustGet(t, s, k); ok {
			t.Errorf("%s exists", k)
		}
	}
	if got := s.AppliedIndex(); got != 3 {
		t.Errorf("applied index %d, want 3", got)
	}
}
